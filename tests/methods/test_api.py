"""``medprune.prune``: argument validation before any expensive step, and the result."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import medprune as mp
from medprune.errors import ConfigError

graph_mod = pytest.importorskip("medprune.graph")


class Untraceable(nn.Module):
    """Fails loudly if anything runs it: validation must happen first."""

    def forward(self, x):
        raise AssertionError("the model ran before the arguments were validated")


X = torch.randn(1, 1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"criterion": "talyor", "target_macs": 0.5}, "Did you mean 'taylor'"),
        ({}, "exactly one of target_macs"),
        ({"target_macs": 0.5, "ratio": 0.3}, "exactly one of target_macs"),
        ({"target_macs": 1.5}, r"fraction in \[0, 1\)"),
        ({"criterion": "hrank", "target_macs": 0.5}, "needs calibration"),
        ({"target_params": 0.5, "fine_tune": "yes"}, "TrainRecipe"),
        ({"ratio": 0.5, "iterative_steps": 0}, "iterative_steps"),
        ({"ratio": 0.5, "criterion_kwargs": {"distance": "l7"}, "criterion": "fpgm"}, "distance"),
    ],
)
def test_bad_arguments_fail_before_running_the_model(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        mp.prune(Untraceable(), X, progress=False, **kwargs)


def test_fine_tune_needs_a_loader_and_task():
    from medprune.tasks import TrainRecipe

    with pytest.raises(ConfigError, match="train_loader"):
        mp.prune(Untraceable(), X, ratio=0.5, fine_tune=TrainRecipe(epochs=1), progress=False)


def test_bad_model_and_inputs():
    with pytest.raises(ConfigError, match="nn.Module"):
        mp.prune("model", X, ratio=0.5)
    with pytest.raises(ConfigError, match="example_inputs"):
        mp.prune(nn.Conv2d(1, 2, 3), [X], ratio=0.5)


def test_prune_returns_a_smaller_working_model():
    model = mp.create_model("tiny_cnn").eval()
    calib = [(torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 0, 1]))]
    result = mp.prune(
        model, X, criterion="beta_rank", target_macs=0.4, calibration=calib, progress=False
    )
    assert abs(result.summary["macs_removed"] - 0.4) <= 0.01
    assert sum(p.numel() for p in result.model.parameters()) < sum(
        p.numel() for p in model.parameters()
    )
    with torch.no_grad():
        assert result.model.eval()(X).shape == model(X).shape
    two_steps = mp.prune(model, X, criterion="l1", ratio=0.5, iterative_steps=2, progress=False)
    assert len(two_steps.plan.steps) == 2 and two_steps.method == "iterative"
