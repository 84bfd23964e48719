"""Property test: on random 2D and 3D compositions of medical-CNN blocks, zeroed channels prune
exactly."""

from __future__ import annotations

import pytest
import torch
from random_models import SIZE, random_net

from medprune.graph import build_graph
from medprune.graph.verify import check_equivalence

CASES = [(seed, 2) for seed in range(40)] + [(seed, 3) for seed in range(100, 112)]


@pytest.mark.parametrize(("seed", "dims"), CASES)
def test_random_network_prunes_exactly(seed, dims):
    model = random_net(seed, dims)
    x = torch.randn(2, 2, *([SIZE] * dims))
    graph = build_graph(model, x)
    # only the data's channels and the class outputs may be pinned: every block has a rule
    assert [where for where, _ in graph.pinned] == ["input x"], (model.kinds, graph.pinned)
    assert graph.prunable_groups(), model.kinds
    result = check_equivalence(model, x, seed=seed)
    assert result.groups >= 1, model.kinds
    assert result.max_abs_diff <= 1e-9 * max(result.max_abs_ref, 1.0), (model.kinds, result)
    assert result.train_forward_ok, model.kinds
    assert result.macs_after < result.macs_before, model.kinds
