"""Class-dependent lottery-ticket pruning: masks, rewinding, the false-negative guard."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from medprune.data import make_synthetic_classification
from medprune.errors import ConfigError
from medprune.methods import lottery as lottery_module
from medprune.methods.base import MethodContext, Target, get_method
from medprune.methods.lottery import MaskCallback, lottery, select_masks
from medprune.models import create_model
from medprune.tasks import ClassificationTask, TrainCallback, TrainRecipe, make_loader, train

EXAMPLE = torch.zeros(2, 1, 16, 16)


def _context(recipe: TrainRecipe | None = None, task: Any = None) -> MethodContext:
    train_set = make_synthetic_classification(48, image_size=16, minority_fraction=0.3, seed=0)
    val_set = make_synthetic_classification(24, image_size=16, minority_fraction=0.3, seed=1)
    return MethodContext(
        task=task or ClassificationTask(2),
        train_loader=make_loader(train_set, 16, shuffle=True, seed=0),
        val_loader=make_loader(val_set, 24, shuffle=False),
        recipe=recipe or TrainRecipe(epochs=1, optimizer="sgd", lr=0.05, scheduler="none"),
        progress=False,
    )


def _model() -> torch.nn.Module:
    return create_model("tiny_cnn", in_channels=1, num_classes=2)


def test_select_masks_per_tensor_and_global() -> None:
    masks = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(6, dtype=torch.bool)}
    scores = {"a": torch.tensor([4.0, 3.0, 2.0, 1.0]), "b": torch.arange(6.0) + 10}
    per = select_masks(masks, scores, 0.5, scope="per_tensor")
    assert per["a"].tolist() == [True, True, False, False]
    assert per["b"].tolist() == [False, False, False, True, True, True]
    glob = select_masks(masks, scores, 0.5, scope="global")  # the 5 lowest are all in "a" + "b"[0]
    assert glob["a"].sum() == 0 and glob["b"].tolist() == [False] + [True] * 5
    again = select_masks(per, scores, 0.5, scope="per_tensor")  # half of the *remaining*
    assert again["a"].tolist() == [True, False, False, False] and int(again["b"].sum()) == 2


def test_masks_stay_zero_through_training_with_momentum_and_decay() -> None:
    model = _model()
    before = copy.deepcopy(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(model.get_parameter(n).shape, generator=gen) > 0.5
             for n in lottery_module.prunable_parameters(model)}  # fmt: skip
    ctx = _context(TrainRecipe(epochs=2, optimizer="sgd", lr=0.05, weight_decay=1e-3))
    train(model, ctx.task, ctx.train_loader, ctx.recipe, callbacks=[MaskCallback(masks)],
          progress=False)  # fmt: skip
    for name, mask in masks.items():
        param = model.get_parameter(name)
        assert torch.all(param[~mask] == 0), name
        assert not torch.equal(param[mask], before[name][mask]), f"{name} did not train"


class _Record(TrainCallback):
    def __init__(self) -> None:
        self.after_first: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, state: Any) -> None:
        if state.epoch == 0:
            self.after_first = copy.deepcopy(state.model.state_dict())


def test_snapshot_at_epoch_k_is_the_trained_state() -> None:
    model = _model()
    masks = {n: torch.ones(model.get_parameter(n).shape, dtype=torch.bool)
             for n in lottery_module.prunable_parameters(model)}  # fmt: skip
    cb, rec = MaskCallback(masks, snapshot_epoch=1), _Record()
    ctx = _context(TrainRecipe(epochs=2, optimizer="adam", lr=1e-2))
    train(model, ctx.task, ctx.train_loader, ctx.recipe, callbacks=[cb, rec], progress=False)
    assert cb.snapshot_ is not None and rec.after_first is not None
    for key, value in rec.after_first.items():
        torch.testing.assert_close(cb.snapshot_[key], value)
    assert not torch.equal(cb.snapshot_["fc2.weight"], model.fc2.weight.detach())


def test_rewinding_restores_the_initial_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    init = copy.deepcopy(model.state_dict())
    starts: list[dict[str, torch.Tensor]] = []
    real_fit = lottery_module.fit

    def recording_fit(m: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        starts.append(copy.deepcopy(m.state_dict()))
        return real_fit(m, *args, **kwargs)

    monkeypatch.setattr(lottery_module, "fit", recording_fit)
    result = lottery(model, EXAMPLE, context=_context(), target=Target(params=0.5),
                     fn_tolerance=1.0)  # fmt: skip
    assert len(starts) == 2  # dense round + one pruning round
    for name, value in init.items():
        expected = value * result.masks[name] if name in result.masks else value
        torch.testing.assert_close(starts[1][name], expected, msg=name)
    assert result.summary["remaining_fraction"] == pytest.approx(0.5, abs=0.01)
    for name, mask in result.masks.items():
        assert torch.all(result.model.get_parameter(name)[~mask] == 0)
    first = result.history[0]
    assert {"auc_roc", "per_class", "remaining_fraction"} <= set(first)
    assert {"fn", "fp"} <= set(first["per_class"][1])


class _SparsityHurtsRecall(ClassificationTask):
    """Reports the important class's recall as the fraction of non-zero conv/linear weights."""

    def evaluate(self, model: torch.nn.Module, loader: Any, **kwargs: Any) -> dict[str, Any]:
        metrics = super().evaluate(model, loader, **kwargs)
        names = lottery_module.prunable_parameters(model)
        weights = [model.get_parameter(n) for n in names]
        dense = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        metrics["per_class"][1] = {**metrics["per_class"][1], "recall": dense}
        return metrics


def test_fn_guard_rejects_a_round_that_breaks_it_and_retrains_with_more_weight() -> None:
    ctx = _context(task=_SparsityHurtsRecall(2))
    result = lottery(_model(), EXAMPLE, context=ctx, target=Target(params=0.5),
                     fn_tolerance=0.1, max_retries=1, weight_growth=3.0, important_class=1)  # fmt: skip
    attempts = [h for h in result.history if h["round"] == 1]
    assert [h["accepted"] for h in attempts] == [False, False]
    assert attempts[1]["class_weights"][1] == pytest.approx(3.0 * attempts[0]["class_weights"][1])
    assert result.summary["remaining_fraction"] == 1.0  # the dense model is kept
    assert all(bool(m.all()) for m in result.masks.values())


def test_fn_guard_accepts_a_round_within_tolerance() -> None:
    ctx = _context(task=_SparsityHurtsRecall(2))
    result = lottery(_model(), EXAMPLE, context=ctx, target=Target(params=0.5),
                     fn_tolerance=0.6, important_class=1)  # fmt: skip
    assert [h.get("accepted") for h in result.history] == [None, True]
    assert result.summary["remaining_fraction"] == pytest.approx(0.5, abs=0.01)


def test_registered_and_validated_before_training() -> None:
    assert get_method("lottery") is lottery
    with pytest.raises(ConfigError, match="does not reduce dense MACs"):
        lottery(_model(), EXAMPLE, context=_context(), target=Target(macs=0.5))
    with pytest.raises(ConfigError, match="criterion must be one of"):
        lottery(_model(), EXAMPLE, context=_context(), target=Target(params=0.5), criterion="x")
    with pytest.raises(ConfigError, match="needs context.val_loader"):
        ctx = _context()
        ctx.val_loader = None
        lottery(_model(), EXAMPLE, context=ctx, target=Target(params=0.5))


@pytest.mark.data
def test_lottery_on_breastmnist(data_dir: Path) -> None:
    from medprune.data import load_medmnist, random_subset

    path = data_dir / "breastmnist" / "breastmnist.npz"
    train_set = random_subset(load_medmnist(path, "train"), 192, seed=0)
    val_set = load_medmnist(path, "val")
    ctx = MethodContext(
        task=ClassificationTask(2),
        train_loader=make_loader(train_set, 32, shuffle=True, seed=0),
        val_loader=make_loader(val_set, 78, shuffle=False),
        recipe=TrainRecipe(epochs=2, optimizer="adam", lr=3e-3),
        progress=False,
    )
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    result = lottery(model, torch.zeros(1, 1, 28, 28), context=ctx, target=Target(params=0.75),
                     fn_tolerance=0.2, important_weight=2.0)  # fmt: skip
    assert result.history[0]["round"] == 0 and result.history[0]["auc_roc"] is not None
    assert result.summary["remaining_fraction"] <= 1.0
    for name, mask in result.masks.items():
        assert torch.all(result.model.get_parameter(name)[~mask] == 0)
