"""``medprune prune``: prune a trained (or freshly trained) model to a budget, fine-tune,
evaluate and measure before / after."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medprune.cli._common import (
    LATENCY_FLAGS,
    add_config_arguments,
    add_latency_arguments,
    add_overwrite_argument,
    add_train_arguments,
    command_line,
    config_from_args,
    echo,
)

HELP = (
    "Prune a model to a MACs / params / measured-latency budget with one criterion or method; "
    "report before/after."
)

PRUNE_FLAGS = {
    "criterion": "prune.criterion",
    "method": "prune.method",
    "finetune_epochs": "prune.finetune.epochs",
    "calibration_size": "prune.calibration_size",
    **LATENCY_FLAGS,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pruning")
    group.add_argument(
        "--criterion", help="importance criterion for oneshot/iterative (beta_rank, l1, ...)"
    )
    group.add_argument(
        "--method",
        help="method (oneshot, iterative, sfp, fpgm_soft, mfp, sauron, lottery) or a criterion name",
    )
    target = group.add_mutually_exclusive_group()
    target.add_argument(
        "--target-macs", type=float, metavar="F", help="remove this fraction of MACs"
    )
    target.add_argument(
        "--target-params", type=float, metavar="F", help="remove this fraction of params"
    )
    target.add_argument(
        "--ratio", type=float, metavar="F", help="remove this fraction of each layer"
    )
    target.add_argument(
        "--target-latency",
        type=float,
        metavar="F",
        help="remove this fraction of the measured latency (0 < F < 1; oneshot / iterative)",
    )
    add_latency_arguments(group)
    group.add_argument(
        "--checkpoint", type=Path, help="base model.pt to prune (default: train one)"
    )
    group.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs after pruning")
    group.add_argument("--calibration-size", type=int, help="calibration images (class-balanced)")
    group.add_argument(
        "--max-recall-drop",
        type=float,
        metavar="F",
        help="guard: reject pruning steps that lower minority-class recall by more than F "
        "(e.g. 0.02); config key `prune.guard`",
    )
    add_config_arguments(
        parser,
        out_help="run folder (default: config `out`); rerun with the same folder to continue an "
        "interrupted run, mid-training included. A folder holding another run's finished "
        "model.pt is refused; without --out such a folder makes way for "
        "<out>/prune-<method>-<amount>",
    )
    add_overwrite_argument(parser)
    add_train_arguments(parser)


def build_config(args: argparse.Namespace) -> Any:
    """The run config from the parsed flags (target flags become ``prune.target`` / ``amount``)."""
    from medprune.config import update_config

    values: dict[str, Any] = {}
    for flag, kind in (
        ("target_macs", "macs"),
        ("target_params", "params"),
        ("ratio", "ratio"),
        ("target_latency", "latency"),
    ):
        amount = getattr(args, flag)
        if amount is not None:
            _check_amount(flag, amount)
            values = {"prune.target": kind, "prune.amount": amount}
    if args.max_recall_drop is not None:
        values["prune.guard"] = {"max_recall_drop": args.max_recall_drop}
    config = config_from_args(args, PRUNE_FLAGS, values=values)
    if args.criterion and not args.method and config.prune.method not in ("oneshot", "iterative"):
        config = update_config(config, {"prune.method": "oneshot"})
    return config


def _check_amount(flag: str, amount: float) -> None:
    """A target flag's fraction: ``[0, 1)``, ``(0, 1)`` for ``--target-latency``."""
    from medprune.errors import ConfigError

    low_ok = flag != "target_latency"
    if not (0.0 <= amount < 1.0) or (amount == 0.0 and not low_ok):
        interval = "[0, 1)" if low_ok else "(0, 1)"
        raise ConfigError(
            f"--{flag.replace('_', '-')} must be a fraction in {interval} (0.5 = remove half); "
            f"got {amount:g}."
        )


def run(args: argparse.Namespace) -> int:
    from medprune.pipeline import run_prune
    from medprune.report import summary_markdown

    config = build_config(args)
    result = run_prune(
        config,
        out=args.out,
        checkpoint=args.checkpoint,
        command=command_line("prune", args),
        log=echo,
        overwrite=args.overwrite,
    )
    echo(summary_markdown([result["base"], result["pruned"]]))
    echo(f"pruned model (model.pt + plan.json), run.json and report in {result['out_dir']}")
    return 0
