"""The training loop: exact resume, callbacks, pruning inside the loop, segmentation 2D / 3D."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medprune.errors import CheckpointError, ConfigError
from medprune.tasks import (
    ClassificationTask,
    EpochSeededSampler,
    SegmentationTask,
    TrainCallback,
    TrainRecipe,
    TrainState,
    evaluate,
    make_loader,
    train,
)


class TinyNet(nn.Module):
    """conv-bn-relu -> pool -> dropout -> linear: (B, 1, 8, 8) -> (B, 2)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x))).mean((2, 3))  # (B, width)
        return self.fc(self.drop(h))


def _classification_data(n: int = 40, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.3).long()
    x = torch.randn(n, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()
    return TensorDataset(x, y)


def _model(seed: int = 123) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def _flat(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


class _InterruptAt(TrainCallback):
    """Raises KeyboardInterrupt at the first step of epoch ``epoch`` (0-based): a killed job."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_step(self, state: TrainState) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


class _HalveWidth(TrainCallback):
    """Physically keeps the first half of the conv filters after epoch 1 (new Parameters)."""

    def __init__(self) -> None:
        self.pruned = False

    def _prune(self, model: TinyNet) -> None:
        keep = torch.arange(model.conv.out_channels // 2)
        with torch.no_grad():
            conv, bn, fc = model.conv, model.bn, model.fc
            conv.weight = nn.Parameter(conv.weight[keep].clone())
            conv.bias = nn.Parameter(conv.bias[keep].clone())
            conv.out_channels = len(keep)
            bn.weight = nn.Parameter(bn.weight[keep].clone())
            bn.bias = nn.Parameter(bn.bias[keep].clone())
            bn.running_mean = bn.running_mean[keep].clone()
            bn.running_var = bn.running_var[keep].clone()
            bn.num_features = len(keep)
            fc.weight = nn.Parameter(fc.weight[:, keep].clone())
            fc.in_features = len(keep)
        self.pruned = True

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch == 0:
            self._prune(state.model)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned}

    def load_state_dict(self, state_dict: dict[str, Any], model: nn.Module) -> None:
        if state_dict["pruned"]:
            self._prune(model)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "prune"),
    [("sgd", "cosine", False), ("adamw", "step", False), ("adam", "cosine", True)],
)
def test_resume_after_kill_reproduces_uninterrupted_weights(
    tmp_path: Path, optimizer: str, scheduler: str, prune: bool
) -> None:
    recipe = TrainRecipe(epochs=3, optimizer=optimizer, lr=0.05, scheduler=scheduler, step_size=1)
    data, val = _classification_data(), _classification_data(16, seed=1)
    task = ClassificationTask(2, loss="focal", class_counts=[28, 12])

    def run(model: nn.Module, callbacks: list[TrainCallback], path: Path, resume: bool) -> Any:
        loader = make_loader(data, 8, shuffle=True, seed=7)
        val_loader = make_loader(val, 8, shuffle=False)
        cbs = ([_HalveWidth()] if prune else []) + callbacks
        return train(
            model,
            task,
            loader,
            recipe,
            val_loader=val_loader,
            callbacks=cbs,
            checkpoint_path=path,
            resume=resume,
            seed=3,
            progress=False,
        )

    full = run(_model(), [], tmp_path / "full.pt", False)
    with pytest.raises(KeyboardInterrupt):
        run(_model(), [_InterruptAt(epoch=1)], tmp_path / "killed.pt", False)
    killed = torch.load(tmp_path / "killed.pt", weights_only=True)
    assert killed["epoch"] == 1 and len(killed["history"]) == 1  # the last finished epoch
    resumed = run(_model(seed=999), [], tmp_path / "killed.pt", True)  # other init: all restored
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 3
    want, got = _flat(full.model), _flat(resumed.model)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    assert [h["lr"] for h in full.history] == [h["lr"] for h in resumed.history]
    assert "val_balanced_accuracy" in full.history[-1]
    if prune:
        assert full.model.conv.out_channels == 2


def test_missing_or_corrupt_checkpoint(tmp_path: Path) -> None:
    loader = make_loader(_classification_data(), 8, shuffle=True, seed=0)
    task, recipe = ClassificationTask(2), TrainRecipe(epochs=1)
    missing = tmp_path / "none.pt"
    with pytest.raises(CheckpointError, match="none.pt"):
        train(_model(), task, loader, recipe, checkpoint_path=missing, resume=True, progress=False)
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt is corrupt"):
        train(_model(), task, loader, recipe, checkpoint_path=corrupt, resume=True, progress=False)
    with pytest.raises(ConfigError, match="needs checkpoint_path"):
        train(_model(), task, loader, recipe, resume=True, progress=False)
    good = tmp_path / "good.pt"
    train(_model(), task, loader, recipe, checkpoint_path=good, progress=False)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        train(
            TinyNet(width=3),
            task,
            loader,
            recipe,
            checkpoint_path=good,
            resume=True,
            progress=False,
        )


class _Recorder(TrainCallback):
    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    def on_train_start(self, state: TrainState) -> None:
        self.log.append((self.name, "start"))

    def extra_loss(self, state, inputs, targets, outputs):  # type: ignore[no-untyped-def]
        self.log.append((self.name, "extra_loss"))
        return None

    def after_backward(self, state: TrainState) -> None:
        self.log.append((self.name, "after_backward"))

    def after_step(self, state: TrainState) -> None:
        self.log.append((self.name, "after_step"))

    def on_epoch_end(self, state: TrainState) -> None:
        self.log.append((self.name, f"epoch_end {state.epoch} step {state.step}"))


def test_callbacks_are_called_in_order() -> None:
    log: list[tuple[str, str]] = []
    loader = make_loader(_classification_data(16), 8, shuffle=True, seed=0)
    recipe = TrainRecipe(epochs=2, scheduler="none")
    callbacks = [_Recorder("a", log), _Recorder("b", log)]
    train(_model(), ClassificationTask(2), loader, recipe, callbacks=callbacks, progress=False)
    step = [
        ("a", "extra_loss"),
        ("b", "extra_loss"),
        ("a", "after_backward"),
        ("b", "after_backward"),
        ("a", "after_step"),
        ("b", "after_step"),
    ]
    expected = [("a", "start"), ("b", "start")]
    for epoch in range(2):
        expected += step * 2
        expected += [
            ("a", f"epoch_end {epoch} step {2 * epoch + 2}"),
            ("b", f"epoch_end {epoch} step {2 * epoch + 2}"),
        ]
    assert log == expected


class _L2OnFc(TrainCallback):
    def __init__(self, coef: float) -> None:
        self.coef, self.grad, self.weight = coef, None, None

    def extra_loss(self, state, inputs, targets, outputs):  # type: ignore[no-untyped-def]
        if self.coef == 0:
            return None
        self.weight = state.model.fc.weight.detach().clone()
        return self.coef * state.model.fc.weight.pow(2).sum()

    def after_backward(self, state: TrainState) -> None:
        self.grad = state.model.fc.weight.grad.clone()


def test_extra_loss_changes_the_gradient() -> None:
    data = _classification_data(8)
    recipe = TrainRecipe(epochs=1, optimizer="sgd", scheduler="none", max_steps_per_epoch=1)
    grads = {}
    for coef in (0.0, 0.5):
        cb = _L2OnFc(coef)
        loader = make_loader(data, 8, shuffle=True, seed=0)
        model = _model()
        model.drop.p = 0.0
        train(model, ClassificationTask(2), loader, recipe, callbacks=[cb], progress=False)
        grads[coef] = (cb.grad, cb.weight)
    (g0, _), (g1, w) = grads[0.0], grads[0.5]
    torch.testing.assert_close(g1 - g0, 2 * 0.5 * w)


class _Rebuild(TrainCallback):
    def __init__(self) -> None:
        self.lrs: list[tuple[float, float]] = []

    def on_epoch_end(self, state: TrainState) -> None:
        self.before = state.optimizer
        self.lrs.append((state.lr, 0.0))
        state.rebuild_optimizer = True

    def after_step(self, state: TrainState) -> None:
        if self.lrs and self.lrs[-1][1] == 0.0:
            self.lrs[-1] = (self.lrs[-1][0], state.lr)
            assert state.optimizer is not self.before


def test_pruning_in_the_loop_rebuilds_optimizer_and_keeps_lr(caplog) -> None:  # type: ignore[no-untyped-def]
    loader = make_loader(_classification_data(), 8, shuffle=True, seed=0)
    recipe = TrainRecipe(
        epochs=3, optimizer="sgd", lr=0.05, scheduler="step", step_size=1, gamma=0.5
    )
    rebuild = _Rebuild()
    with caplog.at_level(logging.WARNING, logger="medprune.tasks.train"):
        result = train(
            _model(),
            ClassificationTask(2),
            loader,
            recipe,
            callbacks=[_HalveWidth(), rebuild],
            progress=False,
        )
    assert result.model.conv.weight.shape == (2, 1, 3, 3)
    assert [h["lr"] for h in result.history] == pytest.approx([0.05, 0.025, 0.0125])
    # lr at epoch end, then lr of the next epoch's first step: decayed once by the scheduler
    assert rebuild.lrs[0] == pytest.approx((0.05, 0.025))
    assert not any("no longer matches" in r.message for r in caplog.records)  # flag given

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medprune.tasks.train"):
        result = train(
            _model(),
            ClassificationTask(2),
            loader,
            recipe,
            callbacks=[_HalveWidth()],
            progress=False,
        )
    assert any("no longer matches" in r.message for r in caplog.records)  # detected, rebuilt
    assert result.model.fc.weight.shape == (2, 2)


def test_epoch_seeded_order_ignores_the_global_rng() -> None:
    sampler = EpochSeededSampler(20, shuffle=True, seed=5)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(1)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(20))
    assert list(EpochSeededSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(_classification_data(), 0, shuffle=True)


def _blobs(n: int, spatial_dims: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    size = 12 if spatial_dims == 2 else 8
    masks = torch.zeros(n, *(size,) * spatial_dims, dtype=torch.long)
    for i in range(n):
        lo = torch.randint(1, size - 4, (spatial_dims,), generator=g)
        box = tuple(slice(int(a), int(a) + 4) for a in lo)  # a 4-pixel / voxel cube
        masks[(i, *box)] = 1
    images = masks.float().unsqueeze(1) + 0.3 * torch.randn(n, 1, *masks.shape[1:], generator=g)
    return TensorDataset(images, masks)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_segmentation_training_on_blobs(spatial_dims: int) -> None:
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    torch.manual_seed(0)
    model = nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), conv(4, 2, 1))
    task = SegmentationTask(2, spatial_dims=spatial_dims)
    loader = make_loader(_blobs(16, spatial_dims, 0), 4, shuffle=True, seed=0)
    val = make_loader(_blobs(6, spatial_dims, 1), 3, shuffle=False)
    recipe = TrainRecipe(epochs=4, lr=0.03, scheduler="none")
    result = train(model, task, loader, recipe, val_loader=val, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    metrics = evaluate(model, task, val)
    assert metrics == task.evaluate(model, val)
    assert metrics["dice"] == pytest.approx(result.history[-1]["val_dice"])
    assert metrics["dice"] > 0.6, metrics
    assert metrics["hd95"] is not None and metrics["n_images_per_class"] == [6]
