"""``medprune export``: write a (pruned) model as ONNX or TorchScript for deployment."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprune.cli._common import add_model_source_arguments, echo, model_from_args

HELP = "Export a model.pt (or --model NAME) to ONNX or TorchScript."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_source_arguments(parser)
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument(
        "--output", "-o", type=Path, help="file to write (default: next to model.pt, or ./model.*)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from medprune.measure import export_onnx, export_torchscript

    model, shape = model_from_args(args)
    suffix = ".onnx" if args.format == "onnx" else ".ts.pt"
    output = args.output
    if output is None:
        stem = args.checkpoint.with_suffix("") if args.checkpoint is not None else Path("model")
        output = stem.with_name(stem.name + suffix)
    output.parent.mkdir(parents=True, exist_ok=True)
    inputs = torch.randn(*shape)
    model = model.eval()
    exporter = export_onnx if args.format == "onnx" else export_torchscript
    path = exporter(model, inputs, output)
    echo(f"{args.format} model written to {path} (input shape {'x'.join(map(str, shape))})")
    return 0
