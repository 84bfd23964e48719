"""``medprune eval``: evaluate a saved model on the test (or validation) split of a config."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprune.cli._common import (
    add_config_arguments,
    add_model_kwargs_argument,
    config_from_args,
    echo,
)

HELP = "Evaluate a saved model.pt (per-class table) on the data of a config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model.pt written by train / prune")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="split to use")
    parser.add_argument("--model", metavar="NAME", help="architecture, for a bare state dict")
    add_model_kwargs_argument(parser)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the metrics here")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medprune.measure import count_macs, count_params
    from medprune.pipeline import evaluate_model, load_model, setup_run, write_json
    from medprune.report import summary_markdown

    config = config_from_args(args)
    setup = setup_run(config)
    model, _ = load_model(
        args.checkpoint,
        model_name=args.model,
        model_kwargs=setup.model_kwargs if args.model or args.model_kwargs else None,
        fallback_name=setup.model_name,
        fallback_kwargs=setup.model_kwargs,
    )
    metrics = evaluate_model(setup, model, args.split)
    example = setup.example_inputs.cpu()
    measurement = {"macs": count_macs(model.cpu(), example), "params": count_params(model)}
    record = {
        "kind": "base",
        "name": str(args.checkpoint),
        "task": setup.task_kind,
        "class_names": setup.class_names,
        "metrics": metrics,
        "measurement": measurement,  # the report's MACs / Params cells (no latency here)
    }
    echo(summary_markdown([record]))
    if args.json is not None:
        write_json(args.json, {"checkpoint": str(args.checkpoint), "split": args.split, **record})
        echo(f"metrics written to {args.json}")
    return 0
