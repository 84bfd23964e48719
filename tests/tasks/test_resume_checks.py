"""Resuming a training checkpoint: refused under another recipe / seed / task, epochs may grow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medprune.errors import CheckpointError
from medprune.tasks import ClassificationTask, TrainRecipe, TrainResult, make_loader, train

BASE = {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "scheduler": "step", "step_size": 1}


def _data(n: int = 24) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, generator=g) < 0.3).long()
    x = torch.randn(n, 1, 6, 6, generator=g) + y.view(-1, 1, 1, 1).float()  # (n, 1, 6, 6)
    return TensorDataset(x, y)


def _model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2),
    )


def _run(
    path: Path | None,
    *,
    resume: bool = False,
    seed: int = 1,
    task: ClassificationTask | None = None,
    **recipe: Any,
) -> TrainResult:
    return train(
        _model(),
        task or ClassificationTask(2),
        make_loader(_data(), 8, shuffle=True, seed=0),
        TrainRecipe(**{**BASE, **recipe}),
        checkpoint_path=path,
        resume=resume,
        seed=seed,
        progress=False,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": 0.01}, "lr: 0.05 -> 0.01"),
        ({"optimizer": "adam"}, "optimizer: 'sgd' -> 'adam'"),
        ({"optimizer": "adam", "epochs": 4}, "optimizer: 'sgd' -> 'adam'; epochs: 2 -> 4"),
        ({"seed": 2}, "seed: 1 -> 2"),
        ({"task": ClassificationTask(2, loss="focal")}, "task.loss: 'ce' -> 'focal'"),
    ],
)
def test_resume_refuses_a_checkpoint_of_another_recipe(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "ckpt.pt"
    _run(path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="other training settings") as info:
        _run(path, resume=True, **change)
    assert message in str(info.value)
    assert f"Delete {path}" in str(info.value) and "another output folder" in str(info.value)
    assert path.read_bytes() == before  # nothing trained, nothing overwritten


@pytest.mark.parametrize("scheduler", ["step", "none"])
def test_raising_epochs_continues_exactly_like_a_longer_run(tmp_path: Path, scheduler: str) -> None:
    longer = _run(None, epochs=3, scheduler=scheduler)
    _run(tmp_path / "ckpt.pt", epochs=2, scheduler=scheduler)  # finished at 2 epochs
    resumed = _run(tmp_path / "ckpt.pt", resume=True, epochs=3, scheduler=scheduler)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_completed == 3
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in longer.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in longer.history]
    for key, value in longer.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["recipe"]["epochs"] == 3  # later resumes compare with 3


def test_epochs_changes_the_checkpoint_cannot_continue(tmp_path: Path) -> None:
    cosine = tmp_path / "cosine.pt"
    _run(cosine, scheduler="cosine")
    with pytest.raises(CheckpointError, match="'cosine' scheduler anneals") as info:
        _run(cosine, resume=True, scheduler="cosine", epochs=3)
    assert "epochs=2" in str(info.value) and f"Delete {cosine}" in str(info.value)
    step = tmp_path / "step.pt"
    _run(step, epochs=2)
    with pytest.raises(CheckpointError, match="already holds 2 finished epochs but epochs=1"):
        _run(step, resume=True, epochs=1)
    same = _run(cosine, resume=True, scheduler="cosine")  # unchanged: a finished run returns
    assert same.resumed_from_epoch == 2 and same.epochs_completed == 2


def test_checkpoint_without_a_stored_recipe_warns_and_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.pt"
    full = _run(None)
    _run(path, epochs=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["recipe"], ckpt["seed"]  # as written before the recipe was stored
    torch.save(ckpt, path)
    with caplog.at_level(logging.WARNING, logger="medprune.tasks.checkpoint"):
        resumed = _run(path, resume=True)
    assert "does not record its recipe and seed" in caplog.text
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 2
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_resume_refuses_another_number_of_processes(tmp_path: Path, monkeypatch) -> None:
    import medprune.tasks.distributed as ddp

    path = tmp_path / "ckpt.pt"
    _run(path)
    monkeypatch.setattr(ddp, "world_size", lambda: 2)  # as if rerun under torchrun -nproc 2
    with pytest.raises(CheckpointError, match=r"world_size \(processes\): 1 -> 2"):
        _run(path, resume=True)


class _Marker:
    """An object in ``recipe.extra`` whose default repr holds a memory address."""


def test_resume_ignores_memory_addresses_in_recipe_extra(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    _run(path, epochs=1, extra={"marker": _Marker()})
    result = _run(path, resume=True, epochs=2, extra={"marker": _Marker()})  # another instance
    assert result.resumed_from_epoch == 1
