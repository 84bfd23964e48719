"""``medprune compare``: every method x target x seed on one base model, under identical
conditions; resumable; writes results.jsonl and report.md / report.html."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from medprune.cli._common import (
    LATENCY_FLAGS,
    add_config_arguments,
    add_latency_arguments,
    add_overwrite_argument,
    add_train_arguments,
    command_line,
    config_from_args,
    echo,
    parse_floats,
    parse_ints,
)
from medprune.config import TargetKind

HELP = "Compare pruning methods / criteria at several budgets and seeds; write a report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("comparison")
    group.add_argument(
        "--methods", help="comma-separated methods or criteria, e.g. l1,fpgm,hrank,beta_rank,sfp"
    )
    group.add_argument("--targets", help="comma-separated fractions to remove, e.g. 0.3,0.5,0.7")
    group.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    group.add_argument(
        "--target-kind",
        choices=typing.get_args(TargetKind),
        help="what the targets are fractions of (config key `prune.target`)",
    )
    add_latency_arguments(group)
    group.add_argument("--checkpoint", type=Path, help="base model.pt (default: train one)")
    group.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs of every run")
    group.add_argument("--retry-failed", action="store_true", help="rerun cells that failed before")
    add_config_arguments(
        parser,
        out_help="comparison folder; rerun with the same folder to continue an interrupted "
        "comparison, mid-training included (finished cells are kept). A folder holding a "
        "finished train / prune run is refused; without --out it makes way for <out>/compare",
    )
    add_overwrite_argument(parser)
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medprune.compare import run_compare
    from medprune.report import summary_markdown

    if args.methods is not None:
        args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.targets is not None:
        args.targets = parse_floats(args.targets, "--targets")
    if args.seeds is not None:
        args.seeds = parse_ints(args.seeds, "--seeds")
    args.retry_failed = True if args.retry_failed else None
    config = config_from_args(
        args,
        {
            "methods": "compare.methods",
            "targets": "compare.targets",
            "seeds": "compare.seeds",
            "target_kind": "prune.target",
            "finetune_epochs": "prune.finetune.epochs",
            "retry_failed": "compare.retry_failed",
            **LATENCY_FLAGS,
        },
    )
    result = run_compare(
        config,
        out=args.out,
        checkpoint=args.checkpoint,
        command=command_line("compare", args),
        overwrite=args.overwrite,
        log=echo,
    )
    echo(summary_markdown([*result.records, *result.latency]))
    echo(f"results.jsonl, report.md and report.html in {result.out_dir}")
    return 0
