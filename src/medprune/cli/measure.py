"""``medprune measure``: parameters, MACs, latency, peak memory and size of one or more models.

With several ``model.pt`` files the models are timed together, their repetitions interleaved
(:func:`medprune.measure.interleaved_latency`), with an A/A copy of the first; the table gets
one column per model and a line stating the noise of the timings.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from medprune.cli._common import add_model_source_arguments, echo, model_from_args

HELP = "Measure models: params, MACs, CPU latency (PyTorch, ONNX Runtime), memory, size."

AA_NAME = "A/A copy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_source_arguments(parser, many=True)
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime export")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for PyTorch timings")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")


def run(args: argparse.Namespace) -> int:
    from medprune.errors import ConfigError

    for flag in ("threads", "repeats"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1; got {getattr(args, flag)}.")
    paths = list(args.checkpoint or [])
    if len(paths) > 1:
        return _run_many(args, paths)
    args.checkpoint = paths[0] if paths else None
    return _run_one(args)


def _run_one(args: argparse.Namespace) -> int:
    import torch

    from medprune.measure import measure
    from medprune.pipeline import write_json

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
    latency = result.get("latency") or {}  # the LatencyResult: spread and noise of the median
    rows = [
        ("input shape", "x".join(str(s) for s in shape)),
        ("params", f"{result['params']:,}"),
        ("MACs", f"{result['macs']:,}"),
        ("latency PyTorch (ms)", _with_spread(result["latency_ms"], latency.get("spread_pct"))),
        ("latency ONNX Runtime (ms)", _ms(result["onnx_latency_ms"])),
        ("peak memory (bytes)", f"{result['peak_memory_bytes']:,}"),
        ("serialized size (bytes)", f"{result['size_bytes']:,}"),
        ("device / threads", f"{result['device']} / {result['threads']}"),
    ]
    echo("| figure | value |\n|---|---|")
    for name, value in rows:
        echo(f"| {name} | {value} |")
    if latency.get("noise_pct") is not None:
        echo(
            f"\nlatency noise: median of {latency['repeats']} runs, run-to-run spread "
            f"±{latency['spread_pct']:.1f}%, median known to ±{latency['noise_pct'] / 2:.1f}% "
            "(95%); to compare models, time them together: medprune measure a.pt b.pt"
        )
    if args.json is not None:
        write_json(args.json, result)
        echo(f"measurement written to {args.json}")
    return 0


def _load_all(args: argparse.Namespace, paths: list[Path]) -> tuple[dict[str, Any], list[int]]:
    """name (the path; ``#2``... for a repeated one) -> model, and the shared input shape."""
    from medprune.errors import ConfigError

    models: dict[str, Any] = {}
    shapes: dict[str, list[int]] = {}
    for path in paths:
        one = copy.copy(args)
        one.checkpoint = path
        model, shape = model_from_args(one)
        name, n = str(path), 1
        while name in models:
            n += 1
            name = f"{path}#{n}"
        models[name], shapes[name] = model, list(shape)
    if len({tuple(s) for s in shapes.values()}) > 1:
        found = ", ".join(f"{k}: {'x'.join(map(str, s))}" for k, s in shapes.items())
        raise ConfigError(
            f"the models store different input shapes ({found}); pass --input-shape B,C,H,W "
            "to time them all on one."
        )
    return models, next(iter(shapes.values()))


def _run_many(args: argparse.Namespace, paths: list[Path]) -> int:
    import torch

    from medprune.measure import interleaved_latency, latency_noise, measure
    from medprune.pipeline import write_json

    models, shape = _load_all(args, paths)
    x = torch.randn(*shape)
    figures = {
        name: measure(model, x, latency=False, threads=args.threads, device=args.device).to_dict()
        for name, model in models.items()
    }
    first = next(iter(models))
    entries = {**models, AA_NAME: copy.deepcopy(models[first])}
    passes = [("latency_ms", "torch", args.device)]
    if args.onnx:
        passes.append(("onnx_latency_ms", "onnxruntime", "cpu"))
    notes, latency = [], {}
    for key, backend, device in passes:
        results = interleaved_latency(
            entries,
            x,
            backend=backend,
            device=device,
            threads=args.threads,
            repeats=args.repeats,
            warmup=args.warmup,
        )
        noise = latency_noise(results, aa=(first, AA_NAME))
        for name in models:
            figures[name][key] = results[name].median_ms
            figures[name][key.removesuffix("_ms") + "_spread_pct"] = results[name].spread_pct
        latency[key] = {"results": {k: r.to_dict() for k, r in results.items()}, "noise": noise}
        label = "PyTorch" if backend == "torch" else "ONNX Runtime"
        notes.append(f"latency {label} ({results[first].device}): {noise.describe()}")
    _print_table(figures, shape, notes)
    if args.json is not None:
        write_json(args.json, {"input_shape": shape, "models": figures, "latency": latency})
        echo(f"measurements written to {args.json}")
    return 0


def _print_table(figures: dict[str, dict[str, Any]], shape: list[int], notes: list[str]) -> None:
    names = list(figures)

    def row(title: str, cell: Any) -> None:
        echo(f"| {title} | " + " | ".join(cell(figures[n]) for n in names) + " |")

    echo("| figure | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    row("input shape", lambda f: "x".join(str(s) for s in shape))
    row("params", lambda f: f"{f['params']:,}")
    row("MACs", lambda f: f"{f['macs']:,}")
    row("latency PyTorch (ms)", lambda f: _spread(f, "latency"))
    if any(f.get("onnx_latency_ms") is not None for f in figures.values()):
        row("latency ONNX Runtime (ms)", lambda f: _spread(f, "onnx_latency"))
    row("peak memory (bytes)", lambda f: f"{f['peak_memory_bytes']:,}")
    row("serialized size (bytes)", lambda f: f"{f['size_bytes']:,}")
    echo()
    for note in notes:
        echo(note)


def _spread(figure: dict[str, Any], key: str) -> str:
    return _with_spread(figure.get(f"{key}_ms"), figure.get(f"{key}_spread_pct"))


def _with_spread(value: float | None, spread: float | None) -> str:
    """``"1.363 (±4.2%)"``: a median latency and its run-to-run spread."""
    return _ms(value) if spread is None else f"{_ms(value)} (±{spread:.1f}%)"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
