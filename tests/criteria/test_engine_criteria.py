"""Every criterion on the engine's groups of the tiny model zoo (2D, 3D, residual, concat...)."""

from __future__ import annotations

import pytest
import torch

import medprune as mp
from medprune.criteria import get_criterion, list_criteria

graph_mod = pytest.importorskip("medprune.graph")
if not hasattr(graph_mod, "build_graph"):
    pytest.skip("the graph engine is not available yet", allow_module_level=True)

MODELS = ["tiny_resnet", "tiny_unet", "tiny_unet3d", "tiny_groupnorm", "tiny_inplace", "tiny_prelu"]


def _setup(name):
    model = mp.create_model(name).eval()
    spatial = (8, 8, 8) if "3d" in name else (12, 12)
    c_in = model.in_channels if hasattr(model, "in_channels") else 1
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, c_in, *spatial, generator=gen)
    with torch.no_grad():
        out = model(x)
    k = out.shape[1]
    y = torch.randint(0, k, (3, *out.shape[2:]) if out.dim() > 2 else (3,), generator=gen)
    return model, x, [(x, y), (x.flip(0), y.flip(0))]


@pytest.mark.parametrize("model_name", MODELS)
def test_all_criteria_on_engine_groups(model_name):
    model, x, data = _setup(model_name)
    graph = mp.build_graph(model, x[:1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in list_criteria():
        scores = get_criterion(name)(graph, data)
        assert set(scores) == {g.key for g in graph.prunable_groups()}, name
        for g in graph.prunable_groups():
            assert scores[g.key].shape == (g.n_channels,) and torch.isfinite(scores[g.key]).all()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_zeroed_channels_score_lowest():
    # channels whose output is exactly zero carry no information: every data criterion sees it
    model, x, data = _setup("tiny_resnet")
    graph = mp.build_graph(model, x[:1])
    group = next(g for g in graph.prunable_groups() if len(g.members("out", "weight")) == 1)
    graph.zero_out(group, torch.tensor([0, 1]))
    for name in ["l1", "l2", "hrank", "beta_rank", "taylor", "taylor_gn", "bn_scale"]:
        s = get_criterion(name)(graph, data)[group.key]
        assert s[:2].max() <= s[2:].min() + 1e-6, name
