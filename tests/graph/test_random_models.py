"""Property test: on random compositions of medical-CNN blocks, zeroed channels prune exactly."""

from __future__ import annotations

import pytest
import torch
from random_models import SIZE, random_net

from medprune.graph import build_graph
from medprune.graph.verify import check_equivalence

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_prunes_exactly(seed):
    model = random_net(seed)
    x = torch.randn(2, 2, SIZE, SIZE)
    graph = build_graph(model, x)
    # only the data's channels and the class outputs may be pinned: every block has a rule
    assert [where for where, _ in graph.pinned] == ["input x"], (model.kinds, graph.pinned)
    assert graph.prunable_groups(), model.kinds
    result = check_equivalence(model, x, seed=seed)
    assert result.groups >= 1, model.kinds
    assert result.max_abs_diff <= 1e-9 * max(result.max_abs_ref, 1.0), (model.kinds, result)
    assert result.train_forward_ok, model.kinds
    assert result.macs_after < result.macs_before, model.kinds
