"""Contract test over every registered ``tiny_*`` model: exact zero-channel pruning."""

from __future__ import annotations

import pytest
import torch

from medprune.models import create_model, list_models
from medprune.models.inputs import example_input


@pytest.mark.parametrize("name", list_models("tiny_*"))
def test_tiny_model_prunes_exactly(name, compare):
    torch.manual_seed(0)
    model = create_model(name)
    x = example_input(model)
    _, graph, plan, after = compare(model, x)
    assert plan, f"{name}: no prunable group; pinned: {graph.pinned}"
    assert after.macs < 0.8 * graph.estimate().macs
