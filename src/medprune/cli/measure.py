"""``medprune measure``: parameters, MACs, latency, peak memory and size of a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprune.cli._common import add_model_source_arguments, echo, model_from_args

HELP = "Measure a model: params, MACs, CPU latency (PyTorch, ONNX Runtime), memory, size."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_source_arguments(parser)
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime export")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for PyTorch timings")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")


def run(args: argparse.Namespace) -> int:
    import torch

    from medprune.errors import ConfigError
    from medprune.measure import measure
    from medprune.pipeline import write_json

    for flag in ("threads", "repeats"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1; got {getattr(args, flag)}.")
    model, shape = model_from_args(args)
    result = measure(
        model,
        torch.randn(*shape),
        onnx=args.onnx,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
    ).to_dict()
    rows = [
        ("input shape", "x".join(str(s) for s in shape)),
        ("params", f"{result['params']:,}"),
        ("MACs", f"{result['macs']:,}"),
        ("latency PyTorch (ms)", _ms(result["latency_ms"])),
        ("latency ONNX Runtime (ms)", _ms(result["onnx_latency_ms"])),
        ("peak memory (bytes)", f"{result['peak_memory_bytes']:,}"),
        ("serialized size (bytes)", f"{result['size_bytes']:,}"),
        ("device / threads", f"{result['device']} / {result['threads']}"),
    ]
    echo("| figure | value |\n|---|---|")
    for name, value in rows:
        echo(f"| {name} | {value} |")
    if args.json is not None:
        write_json(args.json, result)
        echo(f"measurement written to {args.json}")
    return 0


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
