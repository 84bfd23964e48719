"""RecallGuard on a segmentation task: pixel recall of the foreground class is protected."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader

from medprune.data import make_synthetic_segmentation
from medprune.errors import ConfigError
from medprune.methods.guard import RecallGuard
from medprune.models import create_model
from medprune.tasks import SegmentationTask


@pytest.fixture
def loader() -> DataLoader:
    return DataLoader(make_synthetic_segmentation(8, image_size=16, seed=0), batch_size=4)


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("tiny_unet", in_channels=1, out_channels=2)


def test_guard_accepts_the_reference_model_itself(
    loader: DataLoader, model: torch.nn.Module
) -> None:
    task = SegmentationTask(2)
    guard = RecallGuard(task, loader, max_recall_drop=0.01, reference=model)
    masks = torch.cat([t for _, t in loader])
    assert guard.important_class == 1  # foreground pixels are the minority
    assert guard.reference_info["support"] == int((masks == 1).sum())
    ok, info = guard.check(model)
    assert ok and info["recall_drop"] == pytest.approx(0.0)
    assert info["recall"] == pytest.approx(guard.reference_recall)


def test_guard_rejects_a_model_that_never_predicts_foreground(
    loader: DataLoader, model: torch.nn.Module
) -> None:
    task = SegmentationTask(2, hd95=False)
    guard = RecallGuard(task, loader, max_recall_drop=0.01, reference=model)
    assert guard.reference_recall > 0.01  # precondition: the reference finds some foreground
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.head.bias[1] = -1e3  # foreground logits forced down: every pixel is background
    ok, info = guard.check(blind)
    assert not ok
    assert info["recall"] == 0.0 and info["fn"] == info["support"] > 0
    assert info["recall_drop"] == pytest.approx(guard.reference_recall)


def test_guard_protects_background_when_asked(loader: DataLoader, model: torch.nn.Module) -> None:
    task = SegmentationTask(2, hd95=False)
    guard = RecallGuard(task, loader, important_class=0, max_recall_drop=0.01, reference=1.0)
    everything, nothing = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        everything.head.bias[1] = 1e3  # every pixel foreground: background recall 0
        nothing.head.bias[1] = -1e3  # every pixel background: background recall 1
    ok, info = guard.check(everything)
    assert not ok and info["important_class"] == 0 and info["recall"] == 0.0
    ok, info = guard.check(nothing)
    assert ok and info["recall"] == 1.0 and info["fn"] == 0


def test_guard_protects_the_per_class_dice(loader: DataLoader, model: torch.nn.Module) -> None:
    task = SegmentationTask(2, hd95=False)
    guard = RecallGuard(task, loader, metric="dice", max_recall_drop=0.01, reference=model)
    fg = task.evaluate(model, loader)["per_class"][1]
    assert guard.reference_recall == pytest.approx(
        2 * fg["tp"] / (2 * fg["tp"] + fg["fp"] + fg["fn"])
    )
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.head.bias[1] = -1e3  # no foreground predicted: Dice 0
    ok, info = guard.check(blind)
    assert not ok and info["recall"] == 0.0


def test_guard_names_the_available_per_class_metrics(
    loader: DataLoader, model: torch.nn.Module
) -> None:
    guard = RecallGuard(SegmentationTask(2, hd95=False), loader, metric="iou", reference=1.0)
    with pytest.raises(
        ConfigError, match=r"'iou' is not reported.*\['dice', 'precision', 'recall'\]"
    ):
        guard.check(model)
