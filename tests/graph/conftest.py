"""Helpers for the engine tests: the zero-channel equivalence check with assert_close."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from medprune.graph import Cost, PruningGraph, build_graph, prune_channels
from medprune.graph.export import train_batch
from medprune.graph.pruning_graph import total_macs
from medprune.graph.verify import _train_shapes, random_plan, randomize_norms


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []  # None (SegResNetVAE's eval-mode loss) and other non-tensor outputs


def zero_prune_compare(
    model: nn.Module, x: Any, *, seed: int = 0, ignore: tuple[Any, ...] = (), min_groups: int = 1
) -> tuple[nn.Module, PruningGraph, dict[str, torch.Tensor], Cost]:
    """Zero 30-60% of every prunable group, prune, assert equal outputs (float64) and a train
    forward with the unpruned model's train-mode output shapes; the graph's cost estimate must equal the measured
    cost after pruning. Returns (pruned float64 model, its old graph, plan, cost after)."""
    work = copy.deepcopy(model).double().eval()
    randomize_norms(work, seed)
    inputs = tuple(t.double() for t in (x if isinstance(x, tuple) else (x,)))
    graph = build_graph(work, inputs, ignore=ignore)
    plan = random_plan(graph, seed=seed)
    assert len(plan) >= min_groups, f"only {len(plan)} groups to prune: {graph.groups}"
    for key, idx in plan.items():
        graph.zero_out(key, idx)
    with torch.no_grad():
        ref = _tensors(work(*inputs))
    train_inputs = train_batch(inputs)
    ref_train = _train_shapes(copy.deepcopy(work), train_inputs)
    estimate = graph.estimate({k: v for k, v in plan.items()})
    prune_channels(work, graph, plan)
    with torch.no_grad():
        out = _tensors(work(*inputs))
    for a, b in zip(ref, out, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-9)
    after = Cost(total_macs(work, inputs), sum(p.numel() for p in work.parameters()))
    assert estimate == after, f"estimate {estimate} != traced cost after pruning {after}"
    # train mode (batch >= 2) gives the shapes the unpruned model gives in train mode
    assert _train_shapes(work, train_inputs) == ref_train
    return work, graph, plan, after


@pytest.fixture
def compare():
    return zero_prune_compare
