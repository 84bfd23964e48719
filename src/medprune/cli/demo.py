"""``medprune demo``: the whole story on synthetic imbalanced data in a few minutes on a CPU.

Trains a small ResNet on a synthetic set whose rare class differs subtly, evaluates it (per-class
table), measures it, compares a few criteria at one budget (50% of MACs removed) and writes
``report.md`` + ``report.html`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from medprune.cli._common import (
    DeprecatedFlag,
    add_config_arguments,
    command_line,
    config_from_args,
    echo,
    parse_floats,
)

HELP = "Train, prune with several criteria, compare and report on synthetic data (minutes, CPU)."

DEMO: dict[str, Any] = {
    "out": "medprune-demo",
    "data": {
        "kind": "synthetic_classification",
        "n_train": 800,
        "n_val": 150,
        "n_test": 300,
        "image_size": 32,
        "minority_fraction": 0.2,
        "seed": 0,
    },
    "model.name": "small_resnet",
    "model.kwargs": {"base_width": 16, "blocks": [1, 1, 1, 1]},
    "task.class_weights": "balanced",
    "train.epochs": 8,
    "train.lr": 0.003,
    "prune.finetune": {"epochs": 2, "lr": 0.001},
    "prune.calibration_size": 64,
    "measure.repeats": 10,
    "measure.warmup": 3,
    "compare.methods": ["l1", "hrank", "beta_rank", "taylor"],
    "compare.targets": [0.5],
}

FAST: dict[str, Any] = {
    "data": {
        "kind": "synthetic_classification",
        "n_train": 96,
        "n_val": 32,
        "n_test": 64,
        "image_size": 16,
        "minority_fraction": 0.25,
        "seed": 0,
    },
    "model.kwargs": {"base_width": 4, "blocks": [1, 1, 1, 1]},
    "train.epochs": 2,
    "prune.finetune": {"epochs": 1, "lr": 0.001, "max_steps_per_epoch": 2},
    "prune.calibration_size": 16,
    "measure.repeats": 2,
    "measure.warmup": 1,
    "measure.onnx": False,
    "compare.methods": ["l1", "beta_rank"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fast", action="store_true", help="a tiny version (seconds), for tests")
    parser.add_argument("--methods", help="comma-separated methods / criteria to compare")
    parser.add_argument(
        "--targets", help="comma-separated fractions of MACs to remove (default 0.5), as compare"
    )
    parser.add_argument("--target", action=DeprecatedFlag, dest="targets", new="--targets")
    add_config_arguments(parser, out_help="output folder (default ./medprune-demo)")


def _available(names: list[str]) -> tuple[list[str], list[str]]:
    from medprune.errors import ConfigError
    from medprune.pipeline import resolve_method

    ok, missing = [], []
    for name in names:
        try:
            resolve_method(name)
            ok.append(name)
        except ConfigError:
            missing.append(name)
    return ok, missing


def run(args: argparse.Namespace) -> int:
    from medprune.compare import run_compare
    from medprune.config import update_config
    from medprune.errors import ConfigError
    from medprune.report import summary_markdown

    defaults = {**DEMO, **(FAST if args.fast else {})}
    extra = {}
    if args.methods:
        args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        extra["methods"] = "compare.methods"
    if args.targets is not None:
        args.targets = parse_floats(args.targets, "--targets")
        extra["targets"] = "compare.targets"
    config = config_from_args(args, extra, defaults=defaults)
    methods, missing = _available(list(config.compare.methods))
    if missing:
        echo(f"skipping methods not available in this installation: {', '.join(missing)}")
    if not methods:
        raise ConfigError(f"none of the demo methods {config.compare.methods} is available.")
    config = update_config(config, {"compare.methods": methods})
    t0 = time.perf_counter()
    echo(f"medprune demo: training a small model, then comparing {', '.join(methods)}")
    result = run_compare(
        config,
        out=args.out,
        command=command_line("demo", args),
        title="medprune demo: pruning that protects the rare class (synthetic data)",
    )
    echo(summary_markdown(result.records))
    echo(f"report: {result.report.markdown} and {result.report.html}")
    echo(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0
