"""RecallGuard: the important-class recall check every method can use."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medprune.errors import ConfigError
from medprune.methods.guard import RecallGuard, class_counts, minority_class
from medprune.tasks import ClassificationTask


class _Oracle(nn.Module):
    """Logits from the feature that encodes the label: ``x (B, 2)`` = (label, sample id) -> ``(B, 2)``.

    ``flip[i]`` turns the prediction for sample ``i`` into the wrong class.
    """

    def __init__(self, flip: torch.Tensor | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scale * (x[:, 0] - 0.5)  # (B,)
        if self.flip is not None:
            z = torch.where(self.flip[x[:, 1].long()], -z, z)
        return torch.stack([-z, z], dim=1)


@pytest.fixture
def loader() -> DataLoader:
    labels = torch.tensor([0] * 30 + [1] * 10)
    x = torch.stack([labels.float(), torch.arange(40.0)], dim=1)  # (40, 2): label, sample id
    return DataLoader(TensorDataset(x, labels), batch_size=16)


def test_minority_class_and_counts(loader: DataLoader) -> None:
    assert class_counts(loader).tolist() == [30, 10]
    assert minority_class(loader) == 1


def test_guard_rejects_recall_drop_and_accepts_within_tolerance(loader: DataLoader) -> None:
    task = ClassificationTask(2)
    guard = RecallGuard(task, loader, max_recall_drop=0.15, reference=_Oracle())
    assert guard.important_class == 1 and guard.reference_recall == pytest.approx(1.0)
    # 1 of the 10 positives misclassified: recall 0.9, drop 0.1 <= 0.15
    flip_one = torch.zeros(40, dtype=torch.bool)
    flip_one[30] = True
    ok, info = guard.check(_Oracle(flip_one))
    assert ok and info["recall"] == pytest.approx(0.9) and info["fn"] == 1
    # 2 misclassified: drop 0.2 > 0.15
    flip_two = flip_one.clone()
    flip_two[31] = True
    ok, info = guard.check(_Oracle(flip_two))
    assert not ok and info["recall_drop"] == pytest.approx(0.2) and info["reference_fn"] == 0


def test_guard_only_counts_the_important_class(loader: DataLoader) -> None:
    guard = RecallGuard(ClassificationTask(2), loader, max_recall_drop=0.0, reference=1.0)
    many_fp = torch.zeros(40, dtype=torch.bool)
    many_fp[:20] = True  # 20 negatives flipped to positive: FP only
    ok, info = guard.check(_Oracle(many_fp))
    assert ok and info["recall"] == pytest.approx(1.0)


def test_guard_errors() -> None:
    with pytest.raises(ConfigError, match="max_recall_drop must be a fraction"):
        RecallGuard(ClassificationTask(2), [], max_recall_drop=2.0)
    empty = RecallGuard(ClassificationTask(2), [(torch.zeros(2, 2), torch.tensor([0, 1]))])
    assert empty.needs_reference
    with pytest.raises(ConfigError, match="no reference recall"):
        empty.check(_Oracle())
