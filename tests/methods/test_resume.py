"""Methods killed mid-training resume from ``MethodContext.checkpoint_dir``: the same final
weights as an uninterrupted run, finished phases not retrained, foreign checkpoints refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import medprune.tasks
from medprune.data import make_synthetic_classification, make_synthetic_segmentation
from medprune.errors import CheckpointError
from medprune.methods.base import MethodContext, PruneResult, Target
from medprune.methods.iterative import iterative
from medprune.methods.lottery import lottery
from medprune.methods.mfp import mfp
from medprune.methods.sauron import sauron
from medprune.methods.soft import sfp
from medprune.models import create_model
from medprune.tasks import (
    ClassificationTask,
    SegmentationTask,
    TrainCallback,
    TrainRecipe,
    make_loader,
    train,
)

EXAMPLE = torch.zeros(2, 1, 16, 16)


class _Kill(TrainCallback):
    """Raises KeyboardInterrupt after the ``at``-th optimiser step, counted over every phase."""

    def __init__(self, at: int) -> None:
        self.at, self.steps, self.epochs = at, 0, 0

    def after_step(self, state: Any) -> None:
        self.steps += 1
        if self.steps == self.at:
            raise KeyboardInterrupt

    def on_epoch_end(self, state: Any) -> None:
        self.epochs += 1


class _Count(TrainCallback):
    """Counts the epochs actually trained (over every phase)."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_epoch_end(self, state: Any) -> None:
        self.epochs += 1


@pytest.fixture
def extra(monkeypatch: pytest.MonkeyPatch) -> list[TrainCallback]:
    """Callbacks appended to every ``medprune.tasks.train`` call the methods make."""
    added: list[TrainCallback] = []

    def train_with_extra(*args: Any, callbacks: Any = (), **kwargs: Any) -> Any:
        return train(*args, callbacks=[*callbacks, *added], **kwargs)

    monkeypatch.setattr(medprune.tasks, "train", train_with_extra)
    return added


def _classification(epochs: int = 3, val: bool = False) -> MethodContext:
    data = make_synthetic_classification(32, image_size=16, minority_fraction=0.3, seed=0)
    val_set = make_synthetic_classification(16, image_size=16, minority_fraction=0.3, seed=1)
    return MethodContext(
        task=ClassificationTask(2),
        train_loader=make_loader(data, 16, shuffle=True, seed=0),
        val_loader=make_loader(val_set, 16, shuffle=False) if val else None,
        recipe=TrainRecipe(epochs=epochs, optimizer="sgd", lr=0.05, weight_decay=1e-4),
        progress=False,
    )


def _segmentation(epochs: int = 3) -> MethodContext:
    train_set = make_synthetic_segmentation(8, image_size=16, seed=0)
    val_set = make_synthetic_segmentation(4, image_size=16, seed=1)
    return MethodContext(
        task=SegmentationTask(2),
        train_loader=make_loader(train_set, 4, shuffle=True, seed=0),
        val_loader=make_loader(val_set, 4, shuffle=False),
        recipe=TrainRecipe(epochs=epochs, optimizer="adam", lr=1e-2, scheduler="none"),
        progress=False,
    )


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    want, got = a.state_dict(), b.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


Run = Callable[[Path | None], PruneResult]


def _kill_and_resume(
    run: Run, folder: Path, extra: list[TrainCallback], kill_at: int
) -> tuple[PruneResult, PruneResult, int, int]:
    """Uninterrupted run, a run killed at step ``kill_at``, its rerun; returns both results, the
    epochs the killed run finished and the epochs the rerun trained."""
    count = _Count()
    extra[:] = [count]
    full = run(None)
    kill = _Kill(kill_at)
    extra[:] = [kill]
    with pytest.raises(KeyboardInterrupt):
        run(folder)
    assert kill.epochs < count.epochs, "the kill came after the last epoch"
    again = _Count()
    extra[:] = [again]
    resumed = run(folder)
    _assert_same_weights(full.model, resumed.model)
    assert again.epochs == count.epochs - kill.epochs  # finished epochs / phases not retrained
    return full, resumed, kill.epochs, again.epochs


def _with_dir(context: MethodContext, folder: Path | None) -> MethodContext:
    context.checkpoint_dir = folder
    return context


def test_sfp_resumes_mid_training(tmp_path: Path, extra: list[TrainCallback]) -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)

    def run(folder: Path | None) -> PruneResult:
        context = _with_dir(_classification(epochs=3), folder)
        return sfp(model, EXAMPLE, context=context, target=Target(ratio=0.5), mask_grads=True)

    full, resumed, done, trained = _kill_and_resume(run, tmp_path / "state", extra, kill_at=3)
    assert (done, trained) == (1, 2)  # 2 steps per epoch: killed inside epoch 2
    assert [h["masked_channels"] for h in full.history] == [
        h["masked_channels"] for h in resumed.history
    ]
    assert full.plan.steps == resumed.plan.steps
    assert (tmp_path / "state" / "sfp.pt").is_file()


def test_mfp_resume_keeps_the_criterion_choices(tmp_path: Path, extra: list[TrainCallback]) -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)

    def run(folder: Path | None) -> PruneResult:
        context = _with_dir(_classification(epochs=3), folder)
        return mfp(model, EXAMPLE, context=context, target=Target(ratio=0.5),
                   criteria=("l1", "fpgm:l2"), attribute="norm_statistics")  # fmt: skip

    full, resumed, _, _ = _kill_and_resume(run, tmp_path / "state", extra, kill_at=4)
    assert [h["winner"] for h in resumed.history] == [h["winner"] for h in full.history]
    assert len(resumed.history) == 4  # the selection before training and one per epoch
    assert resumed.summary["criterion_wins"] == full.summary["criterion_wins"]


def test_sauron_replays_its_removals_on_resume(tmp_path: Path, extra: list[TrainCallback]) -> None:
    model = create_model("tiny_unet", in_channels=1, out_channels=2)
    fast = dict(tau_init=0.5, tau_max=0.9, kappa=4, rho=0, mu=1.0)

    def run(folder: Path | None) -> PruneResult:
        return sauron(model, EXAMPLE[:1], context=_with_dir(_segmentation(3), folder), **fast)

    full, resumed, done, trained = _kill_and_resume(run, tmp_path / "state", extra, kill_at=5)
    assert (done, trained) == (2, 1)  # killed in epoch 3, after two epochs that removed channels
    assert any(h["removed"] for h in full.history[:2])
    assert full.summary["channels_after"] < full.summary["channels_before"]
    assert full.plan.steps == resumed.plan.steps
    strip = ("epoch_seconds", "prune_seconds")
    assert [{k: v for k, v in h.items() if k not in strip} for h in full.history] == [
        {k: v for k, v in h.items() if k not in strip} for h in resumed.history
    ]


@pytest.mark.parametrize(("kill_at", "expect"), [(4, (1, 3)), (10, (3, 1))])
def test_lottery_resumes_and_keeps_the_rewind_snapshot(
    tmp_path: Path, extra: list[TrainCallback], kill_at: int, expect: tuple[int, int]
) -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    train_set = make_synthetic_classification(48, image_size=16, minority_fraction=0.3, seed=0)

    def run(folder: Path | None) -> PruneResult:
        context = _with_dir(_classification(epochs=2, val=True), folder)
        context.train_loader = make_loader(train_set, 16, shuffle=True, seed=0)  # 3 steps / epoch
        return lottery(model, EXAMPLE, context=context, target=Target(params=0.5),
                       rewind_epoch=1, max_retries=0, fn_tolerance=1.0)  # fmt: skip

    full, resumed, done, trained = _kill_and_resume(run, tmp_path / "state", extra, kill_at)
    assert (done, trained) == expect  # dense killed after its snapshot epoch / round 1 killed
    assert full.masks is not None and resumed.masks is not None
    assert all(torch.equal(full.masks[n], resumed.masks[n]) for n in full.masks)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "lottery_dense.pt",
        "lottery_round1_attempt0.pt",
    ]


def test_iterative_finetunes_resume_per_step(tmp_path: Path, extra: list[TrainCallback]) -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)

    def run(folder: Path | None) -> PruneResult:
        context = _with_dir(_classification(epochs=2), folder)
        return iterative(model, EXAMPLE, context=context, target=Target(macs=0.5), n_steps=2)

    full, resumed, done, trained = _kill_and_resume(run, tmp_path / "state", extra, kill_at=7)
    assert (done, trained) == (3, 1)  # step 0's fine-tuning is not redone
    assert full.plan.steps == resumed.plan.steps
    assert [h["finetune"] for h in full.history][0][-1]["train_loss"] == (
        resumed.history[0]["finetune"][-1]["train_loss"]
    )


def test_checkpoint_of_another_configuration_is_refused(
    tmp_path: Path, extra: list[TrainCallback]
) -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    folder = tmp_path / "state"
    extra[:] = [_Kill(3)]
    with pytest.raises(KeyboardInterrupt):
        sfp(model, EXAMPLE, context=_with_dir(_classification(), folder), target=Target(ratio=0.5))
    extra.clear()
    with pytest.raises(
        CheckpointError, match=r"another configuration \(differs in: options.target"
    ):
        sfp(model, EXAMPLE, context=_with_dir(_classification(), folder), target=Target(ratio=0.3))
    other_lr = _with_dir(_classification(), folder)
    other_lr.recipe = TrainRecipe(epochs=3, optimizer="sgd", lr=0.01, weight_decay=1e-4)
    with pytest.raises(CheckpointError, match=r"differs in: recipe.lr\).*Delete"):
        sfp(model, EXAMPLE, context=other_lr, target=Target(ratio=0.5))


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    context = _classification(epochs=1)
    folder = tmp_path / "state"
    train(model, context.task, context.train_loader, context.recipe,
          checkpoint_path=folder / "sfp.pt", progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="not one of a pruning-method phase"):
        sfp(model, EXAMPLE, context=_with_dir(_classification(), folder), target=Target(ratio=0.5))


def test_other_starting_weights_retrain_the_phase(
    tmp_path: Path, extra: list[TrainCallback], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state"
    torch.manual_seed(0)
    first = create_model("tiny_cnn", in_channels=1, num_classes=2)
    sfp(first, EXAMPLE, context=_with_dir(_classification(), folder), target=Target(ratio=0.5))
    torch.manual_seed(1)
    second = create_model("tiny_cnn", in_channels=1, num_classes=2)  # another "base model"
    count = _Count()
    extra[:] = [count]
    result = sfp(second, EXAMPLE, context=_with_dir(_classification(), folder),
                 target=Target(ratio=0.5))  # fmt: skip
    assert count.epochs == 3 and "started from other weights" in caplog.text
    fresh = sfp(second, EXAMPLE, context=_classification(), target=Target(ratio=0.5))
    _assert_same_weights(fresh.model, result.model)


def test_phase_names_and_fingerprints(tmp_path: Path) -> None:
    from medprune.errors import ConfigError
    from medprune.methods._phases import describe, phase_path

    assert (
        phase_path(tmp_path, "finetune_step1_attempt0") == tmp_path / "finetune_step1_attempt0.pt"
    )
    with pytest.raises(ConfigError, match="plain file stems.*'../sfp'"):
        phase_path(tmp_path, "../sfp")
    assert describe(object()) == describe(object())  # a class path, never a memory address
    assert describe({"target": Target(macs=0.5)}) != describe({"target": Target(macs=0.4)})
    big = torch.arange(100.0)
    assert describe(big) == describe(big.clone()) != describe(big.flip(0))
