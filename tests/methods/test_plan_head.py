"""The groups feeding the output layer (head input) keep most of their channels by default."""

from __future__ import annotations

import pytest
import torch

import medprune as mp
from medprune.errors import ConfigError
from medprune.methods import Target, plan_pruning
from medprune.methods.plan import head_input_keys

graph_mod = pytest.importorskip("medprune.graph")
if not hasattr(graph_mod, "build_graph"):
    pytest.skip("the graph engine is not available yet", allow_module_level=True)


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    model = mp.create_model("tiny_unet", in_channels=1, out_channels=2).eval()
    return mp.build_graph(model, torch.randn(1, 1, 16, 16))


def _rare_detector_scores(graph, head_key: str) -> dict[str, torch.Tensor]:
    """Ordinary scores near 1 everywhere; half of the head input's channels score ~0."""
    gen = torch.Generator().manual_seed(0)
    scores = {
        g.key: 1.0 + 0.1 * torch.rand(g.n_channels, generator=gen) for g in graph.prunable_groups()
    }
    n = scores[head_key].numel()
    scores[head_key][: n // 2] = 1e-3  # sparse detectors: lowest by any magnitude criterion
    return scores


def test_head_input_found_from_the_pinned_output_group(graph):
    keys = head_input_keys(graph)
    output = [g for g in graph.groups if not g.prunable and "model output" in g.pinned_reason]
    heads = {s.module_name for g in output for s in g.slices if s.role == "out"}
    assert heads == {"head"}
    assert keys == {"dec1.0.out"}
    (key,) = keys
    assert any(s.role == "in" and s.module_name in heads for s in graph.group(key).slices)


def test_head_input_keeps_three_quarters_by_default_and_budget_is_met(graph):
    (key,) = head_input_keys(graph)
    n = graph.group(key).n_channels
    scores = _rare_detector_scores(graph, key)
    base = graph.estimate({}).macs
    capped = plan_pruning(graph, scores, Target(macs=0.4))
    free = plan_pruning(graph, scores, Target(macs=0.4), head_input_max=None)
    for plan in (capped, free):
        assert abs(1 - graph.estimate(plan).macs / base - 0.4) <= 0.01
    lost_capped = len(capped.get(key, []))
    lost_free = len(free.get(key, []))
    assert n - lost_capped >= 0.75 * n
    assert lost_free >= n // 2 > lost_capped
    # the protected channels are the lowest-scored ones that the uncapped plan removes first
    assert set(free[key].tolist()) >= set(range(n // 2))
    # other groups pay for the protection
    others_capped = sum(len(v) for k, v in capped.items() if k != key)
    others_free = sum(len(v) for k, v in free.items() if k != key)
    assert others_capped > others_free


def test_head_input_cap_never_raises_max_per_layer(graph):
    (key,) = head_input_keys(graph)
    scores = _rare_detector_scores(graph, key)
    plan = plan_pruning(graph, scores, Target(ratio=0.05), max_per_layer=0.1, head_input_max=0.5)
    n = graph.group(key).n_channels
    assert len(plan.get(key, [])) <= int(0.1 * n)


def test_head_input_max_validated(graph):
    scores = mp.get_criterion("l1")(graph)
    with pytest.raises(ConfigError, match="head_input_max"):
        plan_pruning(graph, scores, Target(ratio=0.3), head_input_max=1.5)
