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


def test_blend_and_surviving_scores():
    from medprune.methods.stepwise import blend_scores, surviving_scores

    kept = surviving_scores({"a": torch.tensor([4.0, 1.0, 3.0, 2.0])}, {"a": torch.tensor([1])})
    assert kept["a"].tolist() == [4.0, 3.0, 2.0]  # channel 1 removed, the rest renumbered
    new = {"a": torch.tensor([0.0, 10.0, 20.0]), "b": torch.tensor([1.0, 2.0])}
    out = blend_scores(new, {**kept, "b": torch.tensor([5.0])}, 0.9)
    assert out["a"].tolist() == pytest.approx([3.6, 3.7, 3.8])  # 0.9 * old + 0.1 * new
    assert out["b"].tolist() == [1.0, 2.0]  # sizes differ: starts afresh


def test_iterative_averages_scores_across_steps(monkeypatch):
    from medprune.methods import stepwise

    raw, planned, removed = [], [], []
    real_plan, real_blend = stepwise.plan_pruning, stepwise.blend_scores

    def recording_blend(scores, previous, ema):
        raw.append({k: v.clone() for k, v in scores.items()})
        return real_blend(scores, previous, ema)

    def recording_plan(graph, scores, target, **kwargs):
        planned.append({k: v.clone() for k, v in scores.items()})
        removed.append(real_plan(graph, scores, target, **kwargs))
        return removed[-1]

    monkeypatch.setattr(stepwise, "plan_pruning", recording_plan)
    monkeypatch.setattr(stepwise, "blend_scores", recording_blend)
    model, x, context = _model_and_context()
    result = get_method("iterative")(
        model, x, context=context, target=Target(ratio=0.5), n_steps=2, criterion="l2",
        score_ema=0.5,
    )  # fmt: skip
    assert result.summary["score_ema"] == 0.5 and len(planned) == 2
    for key, value in raw[0].items():  # step 0: nothing to average with
        assert torch.equal(planned[0][key], value)
    survivors = stepwise.surviving_scores(planned[0], removed[0])
    checked = 0
    for key, value in raw[1].items():
        if key in survivors and survivors[key].shape == value.shape:
            torch.testing.assert_close(planned[1][key], 0.5 * survivors[key] + 0.5 * value)
            checked += 1
    assert checked >= 1


def test_score_ema_auto_is_on_for_taylor_only(monkeypatch):
    from medprune.methods import iterative as iterative_module

    seen = {}

    def fake_run_steps(*args, score_ema=None, **kwargs):
        seen["score_ema"] = score_ema
        raise RuntimeError("stop here")

    monkeypatch.setattr(iterative_module, "run_steps", fake_run_steps)
    model, x, context = _model_and_context()
    context.calibration = [(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))]
    for criterion, expected in (("taylor", 0.9), ("taylor_gn", 0.9), ("l2", None), ("hrank", None)):
        with pytest.raises(RuntimeError, match="stop here"):
            get_method("iterative")(
                model, x, context=context, target=Target(ratio=0.3), criterion=criterion
            )
        assert seen["score_ema"] == expected, criterion
    with pytest.raises(ConfigError, match="score_ema"):
        get_method("iterative")(
            model, x, context=context, target=Target(ratio=0.3), criterion="l2", score_ema="on"
        )
