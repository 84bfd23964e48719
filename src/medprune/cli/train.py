"""``medprune train``: train the base model from a config, evaluate and measure it."""

from __future__ import annotations

import argparse

from medprune.cli._common import (
    add_config_arguments,
    add_overwrite_argument,
    add_train_arguments,
    command_line,
    config_from_args,
    echo,
)

HELP = "Train a model from a config (synthetic data by default); evaluate and measure it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser,
        out_help="run folder (default: config `out`, runs/medprune). A folder holding another "
        "run's finished model.pt is refused; without --out such a folder makes way for <out>-2",
    )
    add_overwrite_argument(parser)
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medprune.pipeline import run_train
    from medprune.report import summary_markdown

    config = config_from_args(args)
    result = run_train(
        config,
        out=args.out,
        command=command_line("train", args),
        overwrite=args.overwrite,
        log=echo,
    )
    echo(summary_markdown([result["base"]]))
    echo(f"model, run.json and report written to {result['out_dir']}")
    return 0
