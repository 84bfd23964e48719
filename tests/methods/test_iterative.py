"""Schedules, iterative pruning and guard back-off."""

from __future__ import annotations

import pytest
import torch

import medprune as mp
from medprune.errors import ConfigError
from medprune.methods import MethodContext, Target, get_method, get_schedule, list_schedules

graph_mod = pytest.importorskip("medprune.graph")


def test_schedules_are_cumulative_and_end_at_target():
    assert list_schedules() == ["geometric", "linear"]
    assert get_schedule("linear")(0.6, 3) == pytest.approx([0.2, 0.4, 0.6])
    geo = get_schedule("geometric")(0.75, 2)
    assert geo == pytest.approx([0.5, 0.75])  # keeps 1/2, then 1/4
    for name in list_schedules():
        f = get_schedule(name)(0.5, 4)
        assert len(f) == 4 and f[-1] == pytest.approx(0.5) and f == sorted(f)
    with pytest.raises(ConfigError, match="Did you mean 'linear'"):
        get_schedule("lienar")
    with pytest.raises(ConfigError, match="n_steps"):
        get_schedule("linear")(0.5, 0)


class FlakyGuard:
    """Rejects any model that lost more than ``max_removed`` of its parameters."""

    def __init__(self, base_params: int, max_removed: float) -> None:
        self.base = base_params
        self.max_removed = max_removed
        self.calls = 0

    def check(self, model):
        self.calls += 1
        removed = 1 - sum(p.numel() for p in model.parameters()) / self.base
        return removed <= self.max_removed, {"removed": removed}


def _model_and_context(guard=None):
    from medprune.tasks import TrainRecipe

    model = mp.create_model("tiny_cnn").eval()
    context = MethodContext(recipe=TrainRecipe(epochs=0), guard=guard, progress=False)
    return model, torch.randn(1, 1, 16, 16), context


def test_iterative_reaches_target_in_steps():
    model, x, context = _model_and_context()
    result = get_method("iterative")(
        model, x, context=context, target=Target(macs=0.5), n_steps=3, criterion="l2"
    )
    removed = [h["macs_removed"] for h in result.history]
    assert len(result.plan.steps) == 3 and removed == sorted(removed)
    assert abs(result.summary["macs_removed"] - 0.5) <= 0.02
    assert result.summary["fractions"] == pytest.approx([1 / 6, 2 / 6, 0.5])


def test_guard_backs_off_and_records_it():
    model, x, context = _model_and_context()
    base = sum(p.numel() for p in model.parameters())
    guard = FlakyGuard(base, max_removed=0.3)
    context.guard = guard
    result = get_method("oneshot")(model, x, context=context, target=Target(params=0.6))
    attempts = [h for h in result.history if "guard" in h]
    assert attempts[0]["guard"]["ok"] is False and attempts[-1]["guard"]["ok"] is True
    assert attempts[1]["goal"] == pytest.approx(0.3)  # half the step's extra removal
    assert result.summary["guard_backoffs"] >= 1
    assert result.summary["params_removed"] <= 0.3


def test_guard_rejecting_everything_keeps_the_model():
    model, x, context = _model_and_context()
    context.guard = FlakyGuard(sum(p.numel() for p in model.parameters()), max_removed=0.0)
    result = get_method("iterative")(
        model, x, context=context, target=Target(macs=0.5), n_steps=2, max_guard_retries=2
    )
    assert result.history[-1] == {"step": 0, "rejected": True, "kept": "pre-step model"}
    assert result.summary["macs_removed"] == 0.0 and result.plan.steps == []
    assert context.guard.calls == 3
