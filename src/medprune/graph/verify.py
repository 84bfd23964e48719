"""The invariant every test leans on: removing channels whose outputs are exactly zero does not
change the model's output.

:func:`check_equivalence` zeroes a random share of the channels of every prunable group of a
float64 copy of the model, records its output, removes those channels physically, and compares.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medprune.graph.export import as_input_tuple, train_batch
from medprune.graph.pruning_graph import PruningGraph, build_graph
from medprune.graph.surgery import prune_channels

__all__ = ["EquivalenceResult", "check_equivalence", "random_plan", "randomize_norms"]


@dataclass(frozen=True)
class EquivalenceResult:
    """Outcome of :func:`check_equivalence`.

    Attributes:
        max_abs_diff: largest absolute output difference (zeroed model vs pruned model).
        max_abs_ref: largest absolute output value of the zeroed model (scale of the diff).
        groups: prunable groups that lost channels.
        skipped: prunable groups left alone because zeroing them is not exact (``zero_exact``).
        pinned: pinned ops reported by the graph.
        macs_before: MACs of the unpruned model (example input, batch included).
        macs_after: MACs after pruning.
        params_before: parameters before.
        params_after: parameters after.
        train_forward_ok: a forward in train mode worked and kept the output shape.
    """

    max_abs_diff: float
    max_abs_ref: float
    groups: int
    skipped: int
    pinned: int
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    train_forward_ok: bool


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give norm layers random affine parameters and running statistics (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name, lo, hi in (
                ("running_mean", -0.5, 0.5),
                ("running_var", 0.5, 2.0),
                ("weight", 0.5, 1.5),
                ("bias", -0.5, 0.5),
            ):
                t = getattr(m, name, None)
                norm_like = isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
                if norm_like and isinstance(t, torch.Tensor) and t.is_floating_point():
                    t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (hi - lo) + lo)


def random_plan(
    graph: PruningGraph,
    *,
    fraction: tuple[float, float] = (0.3, 0.6),
    seed: int = 0,
    exact_only: bool = True,
) -> dict[str, torch.Tensor]:
    """A random removal for every prunable group: ``fraction`` of its blocks, whole blocks only."""
    gen = torch.Generator().manual_seed(seed)
    plan: dict[str, torch.Tensor] = {}
    for group in graph.prunable_groups():
        if exact_only and not group.zero_exact:
            continue
        m = group.channel_multiple
        n_blocks = group.n_channels // m
        keep_min = -(-group.min_channels // m)
        lo, hi = fraction
        frac = lo + (hi - lo) * float(torch.rand((), generator=gen))
        r = min(max(int(round(frac * n_blocks)), 1), n_blocks - keep_min)
        if r <= 0:
            continue
        blocks = torch.randperm(n_blocks, generator=gen)[:r]
        idx = (blocks[:, None] * m + torch.arange(m)[None, :]).reshape(-1)
        plan[group.key] = torch.sort(idx).values
    return plan


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return _first_tensor(next(iter(out.values())))
    return _first_tensor(out[0])


def _all_tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _all_tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _all_tensors(v)]
    return []


def _working_copy(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[nn.Module, tuple[Any, ...]]:
    """An eval-mode float64 copy of ``model`` and inputs, or float32 if float64 fails to run."""
    for dtype in (torch.float64, torch.float32):
        work = copy.deepcopy(model).to(dtype).eval()
        cast = tuple(
            t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
            for t in inputs
        )
        try:
            with torch.no_grad():
                work(*cast)
        except RuntimeError:
            if dtype == torch.float32:
                raise
            continue
        return work, cast
    raise AssertionError("unreachable")


def _train_shapes(model: nn.Module, inputs: tuple[Any, ...]) -> list[tuple[int, ...]]:
    """Output shapes (batch dim dropped) of one train-mode forward without gradients."""
    model.train()
    with torch.no_grad():
        shapes = [tuple(t.shape[1:]) for t in _all_tensors(model(*inputs))]
    model.eval()
    return shapes


def check_equivalence(
    model: nn.Module,
    example_inputs: Any,
    *,
    fraction: tuple[float, float] = (0.3, 0.6),
    seed: int = 0,
    ignore: tuple[Any, ...] = (),
) -> EquivalenceResult:
    """Zero, prune and compare on a float64 copy of ``model`` (``model`` itself is untouched).

    A model that cannot run in float64 (it builds float32 tensors inside its forward) is
    checked in float32; ``max_abs_ref`` gives the scale to judge ``max_abs_diff`` against.
    The train-mode forward of the pruned model must give the shapes the unpruned model gives
    in train mode (deep supervision and VAE branches return more there than in eval).

    Args:
        model: the network.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of inputs.
        fraction: range of the random share of each group's channels to remove.
        seed: random seed of the choice.
        ignore: passed to :func:`build_graph`.

    Returns:
        The :class:`EquivalenceResult`.
    """
    work, inputs = _working_copy(model, as_input_tuple(example_inputs))
    randomize_norms(work, seed)
    graph = build_graph(work, inputs, ignore=ignore)
    plan = random_plan(graph, fraction=fraction, seed=seed)
    skipped = sum(1 for g in graph.prunable_groups() if not g.zero_exact)
    before = graph.estimate()
    for key, idx in plan.items():
        graph.zero_out(key, idx)
    with torch.no_grad():
        ref = _all_tensors(work(*inputs))
    train_inputs = train_batch(inputs)
    ref_train = _train_shapes(copy.deepcopy(work), train_inputs)
    step = prune_channels(work, graph, plan)
    with torch.no_grad():
        out = _all_tensors(work(*inputs))
    diff = max(float((a - b).abs().max()) for a, b in zip(ref, out, strict=True)) if ref else 0.0
    scale = max(float(a.abs().max()) for a in ref) if ref else 0.0
    after = build_graph(work, inputs, ignore=ignore).estimate()
    train_ok = _train_shapes(work, train_inputs) == ref_train
    return EquivalenceResult(
        max_abs_diff=diff,
        max_abs_ref=scale,
        groups=len(plan),
        skipped=skipped,
        pinned=len(graph.pinned),
        macs_before=before.macs,
        macs_after=after.macs,
        params_before=step.params_before,
        params_after=step.params_after,
        train_forward_ok=train_ok,
    )
