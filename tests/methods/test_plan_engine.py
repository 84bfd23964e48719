"""Budget search on the engine's graphs: MACs targets within 1 point, and physically exact."""

from __future__ import annotations

import pytest
import torch

import medprune as mp
from medprune.methods import Target, plan_pruning

graph_mod = pytest.importorskip("medprune.graph")
if not hasattr(graph_mod, "build_graph"):
    pytest.skip("the graph engine is not available yet", allow_module_level=True)

MONAI_UNET = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 2,
    "channels": (8, 16, 32, 64),
    "strides": (2, 2, 2),
}
PANEL = [
    ("tiny_resnet", {}, (1, 1, 16, 16)),
    ("tiny_unet", {}, (1, 1, 16, 16)),
    ("tiny_unet3d", {}, (1, 1, 8, 8, 8)),
    ("resnet56", {}, (1, 3, 32, 32)),
    ("unet", {}, (1, 1, 32, 32)),
    ("monai.UNet", MONAI_UNET, (1, 1, 32, 32)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), PANEL, ids=[p[0] for p in PANEL])
def test_macs_target_within_one_point_and_physically_exact(name, kwargs, shape):
    model = mp.create_model(name, **kwargs).eval()
    x = torch.randn(*shape)
    graph = mp.build_graph(model, x)
    scores = mp.get_criterion("l1")(graph)
    base = graph.estimate({})
    plans = {goal: plan_pruning(graph, scores, Target(macs=goal)) for goal in (0.3, 0.5)}
    for goal, plan in plans.items():
        removed = 1 - graph.estimate(plan).macs / base.macs
        assert abs(removed - goal) <= 0.01, (goal, removed)
    plan = plans[0.5]
    expected = graph.estimate(plan).macs
    mp.prune_channels(model, graph, plan)
    from medprune.measure import count_macs

    assert count_macs(model, x) == pytest.approx(expected, rel=1e-6)


def test_params_target_and_round_to_on_resnet56():
    model = mp.create_model("resnet56").eval()
    x = torch.randn(1, 3, 32, 32)
    graph = mp.build_graph(model, x)
    scores = mp.get_criterion("l2")(graph)
    plan = plan_pruning(graph, scores, Target(params=0.4), round_to=4)
    base = graph.estimate({})
    assert abs(1 - graph.estimate(plan).params / base.params - 0.4) <= 0.01
    groups = {g.key: g for g in graph.prunable_groups()}
    assert all((groups[k].n_channels - len(v)) % 4 == 0 for k, v in plan.items())


def test_ignore_patterns_leave_groups_untouched():
    model = mp.create_model("resnet56").eval()
    graph = mp.build_graph(model, torch.randn(1, 3, 32, 32))
    scores = mp.get_criterion("l1")(graph)
    plan = plan_pruning(graph, scores, Target(ratio=0.5), ignore=["layer1"])
    assert plan and not any("layer1." in k and "+" not in k for k in plan)
