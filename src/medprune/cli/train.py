"""``medprune train``: train the base model from a config, evaluate and measure it."""

from __future__ import annotations

import argparse

from medprune.cli._common import (
    add_config_arguments,
    add_train_arguments,
    command_line,
    config_from_args,
    echo,
)

HELP = "Train a model from a config (synthetic data by default); evaluate and measure it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, out_help="run folder (default: config `out`, runs/medprune)")
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medprune.pipeline import run_train
    from medprune.report import summary_markdown

    config = config_from_args(args)
    result = run_train(config, out=args.out, command=command_line("train", args))
    echo(summary_markdown([result["base"]]))
    echo(f"model, run.json and report written to {args.out or config.out}")
    return 0
