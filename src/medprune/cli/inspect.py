"""``medprune inspect``: the channel groups of a model, what is pinned and why, a sample pruning,
and the zero-channel equivalence check on the user's own model.

The model is ``--model NAME --input-shape B,C,H,W`` (built as ``measure`` / ``export`` build it:
``in_channels``, ``spatial_dims`` and ``image_size`` from the shape, see
:func:`medprune.cli._common.model_for_input`), or the one a run config builds
(``--config run.yaml``: ``model.name`` / ``model.kwargs`` completed from the data, and the data's
input shape); flags override the config.

The last line is machine-readable::

    equivalence: max_abs_diff=<float> groups=<int> pinned=<int> macs_before=<int> macs_after=<int>
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from medprune.cli._common import add_config_file_arguments, add_model_kwargs_argument

HELP = "Show a model's prunable channel groups, pinned ops, and check exact pruning on it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="NAME|FILE.py:FACTORY",
        help="registered name (tiny_unet, monai.UNet, ...) or a factory path/to/file.py:make_model"
        " (config key `model.name`)",
    )
    add_model_kwargs_argument(parser)
    parser.add_argument(
        "--input-shape",
        metavar="B,C,H,W",
        help="example input shape (with --config: default from the data)",
    )
    parser.add_argument(
        "--ratio",
        type=float,
        default=0.5,
        help="share of channels removed per group in the sample pruning",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="MODULE",
        help="module name to keep unpruned (repeatable)",
    )
    parser.add_argument("--max-rows", type=int, default=60, help="print at most this many groups")
    parser.add_argument(
        "--seed", type=int, help="seed of the random equivalence check (default: config `seed`, 0)"
    )
    add_config_file_arguments(parser)


def model_and_shape(args: argparse.Namespace) -> tuple[Any, list[int], int]:
    """``(model, input shape, seed)`` from ``--model`` / ``--input-shape`` or ``--config``."""
    from medprune.cli._common import (
        config_from_args,
        model_for_input,
        parse_model_kwargs,
        parse_shape,
    )
    from medprune.errors import ConfigError

    shape = parse_shape(args.input_shape) if args.input_shape else None
    if args.config is None and not args.set:
        if args.model is None or shape is None:
            raise ConfigError(
                "inspect needs --model NAME and --input-shape B,C,H,W, or --config run.yaml."
            )
        model = model_for_input(args.model, parse_model_kwargs(args.model_kwargs), shape)
        return model, shape, 0 if args.seed is None else args.seed
    from medprune.pipeline import build_model, setup_run

    setup = setup_run(config_from_args(args))
    model = build_model(setup)
    shape = shape or list(setup.example_inputs.shape)
    return model, shape, setup.config.seed if args.seed is None else args.seed


def uniform_plan(graph, ratio: float) -> dict:
    """Remove ``ratio`` of each prunable group's blocks, lowest mean L1 filter norm first."""
    import torch

    plan = {}
    for group in graph.prunable_groups():
        m = group.channel_multiple
        n_blocks = group.n_channels // m
        r = min(int(ratio * n_blocks), n_blocks - -(-group.min_channels // m))
        if r <= 0:
            continue
        weights = group.out_weights()
        if weights:
            score = torch.stack([w.abs().sum(1).float() for w in weights]).mean(0)
        else:
            score = torch.zeros(group.n_channels)
        block_score = score.reshape(n_blocks, m).mean(1)
        blocks = torch.argsort(block_score)[:r]
        plan[group.key] = torch.sort((blocks[:, None] * m + torch.arange(m)).reshape(-1)).values
    return plan


def run(args: argparse.Namespace) -> int:
    import torch

    from medprune.cli._common import echo
    from medprune.errors import ConfigError
    from medprune.graph import build_graph, prune_channels
    from medprune.graph.verify import check_equivalence

    if not 0.0 <= args.ratio < 1.0:
        raise ConfigError(f"--ratio must be in [0, 1); got {args.ratio}.")
    model, shape, seed = model_and_shape(args)
    model = model.eval()
    x = torch.randn(*shape)
    graph = build_graph(model, x, ignore=tuple(args.ignore))
    prunable = graph.prunable_groups()
    echo(f"model: {type(model).__name__}  input: {tuple(shape)}  {graph}")
    echo("")
    echo(f"{'group':<48} {'ch':>5} {'blk':>3}  state")
    for group in graph.groups[: args.max_rows]:
        state = (
            "prunable"
            if group in prunable
            else f"pinned: {group.pinned_reason or 'too few channels'}"
        )
        if group.prunable and not group.zero_exact:
            state += " (zeroing not exact: a non-zero-preserving op follows)"
        echo(f"{group.key[:48]:<48} {group.n_channels:>5} {group.channel_multiple:>3}  {state}")
    if len(graph.groups) > args.max_rows:
        echo(f"... {len(graph.groups) - args.max_rows} more groups")
    echo("")
    echo(f"pinned ops / modules ({len(graph.pinned)}):")
    for where, reason in graph.pinned:
        echo(f"  {where}: {reason}")
    if graph.probed:
        echo(f"probed on a pruned copy ({len(graph.probed)}):")
        for key, kind, ok in graph.probed:
            verdict = "sizes follow the channel count: pruned through" if ok else "fixed: pinned"
            echo(f"  {key} ({kind}): {verdict}")

    plan = uniform_plan(graph, args.ratio)
    before = graph.estimate()
    estimated = graph.estimate({k: len(v) for k, v in plan.items()})
    sample = copy.deepcopy(model)
    sample_graph = build_graph(sample, x, ignore=tuple(args.ignore))
    prune_channels(sample, sample_graph, plan)
    macs_before, macs_after = before.macs, estimated.macs
    try:
        from medprune.measure import count_macs

        macs_before, macs_after = count_macs(model, x), count_macs(sample, x)
    except ImportError:  # measurement package absent: keep the graph's estimate
        pass
    params_after = sum(p.numel() for p in sample.parameters())
    echo("")
    echo(
        f"sample uniform pruning: {args.ratio:.0%} of the channels of {len(plan)} groups (lowest L1 first)"
    )
    echo(f"  MACs   {macs_before:,} -> {macs_after:,} ({macs_after / max(macs_before, 1):.1%})")
    echo(
        f"  params {before.params:,} -> {params_after:,} ({params_after / max(before.params, 1):.1%})"
    )
    result = check_equivalence(model, x, seed=seed, ignore=tuple(args.ignore))
    echo(
        f"zero-channel check (float64, {result.groups} groups zeroed then removed, "
        f"{result.skipped} skipped as not zero-exact): max |diff| = {result.max_abs_diff:.3g} "
        f"(output scale {result.max_abs_ref:.3g}); train-mode forward "
        f"{'ok' if result.train_forward_ok else 'FAILED'}"
    )
    echo(
        f"equivalence: max_abs_diff={float(result.max_abs_diff)!r} groups={len(prunable)} "
        f"pinned={len(graph.pinned)} macs_before={macs_before} macs_after={macs_after}"
    )
    return 0 if result.train_forward_ok else 1
