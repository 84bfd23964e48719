"""Classification (binary and multi-class): outputs ``(B, C)`` logits, targets int64 ``(B,)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medprune.errors import ShapeMismatchError
from medprune.tasks.base import TASKS, Task
from medprune.tasks.losses import create_classification_loss
from medprune.tasks.metrics import ClassificationMeter

__all__ = ["ClassificationTask"]


@TASKS.register("classification")
class ClassificationTask(Task):
    """Image classification with an imbalance-aware loss; the primary metric is balanced accuracy.

    Args:
        num_classes: ``C`` (>= 2).
        loss: ``"ce"``, ``"weighted_ce"`` (needs ``class_weights`` or ``class_counts``) or
            ``"focal"``.
        class_weights: per-class loss weights ``(C,)`` (CE weight / focal alpha).
        class_counts: per-class training counts ``(C,)``; give inverse-frequency weights
            ``N / (C * n_c)`` when ``class_weights`` is None.
        focal_gamma: focusing parameter of the focal loss.

    Example:
        >>> task = ClassificationTask(2, loss="weighted_ce", class_counts=[900, 100])
        >>> task.loss(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0])).shape
        torch.Size([])
    """

    kind = "classification"
    primary_metric = "balanced_accuracy"

    def __init__(
        self,
        num_classes: int,
        *,
        loss: str = "ce",
        class_weights: Sequence[float] | torch.Tensor | None = None,
        class_counts: Sequence[int] | torch.Tensor | None = None,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__(num_classes)
        self.loss_name = loss
        self.loss_fn = create_classification_loss(
            loss,
            num_classes,
            class_weights=class_weights,
            class_counts=class_counts,
            focal_gamma=focal_gamma,
        )
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.class_counts = None if class_counts is None else [int(n) for n in class_counts]
        self.focal_gamma = float(focal_gamma)

    def check_targets(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.ndim != 2:
            raise ShapeMismatchError(
                f"classification outputs must be (B, {self.num_classes}) logits; got "
                f"{tuple(outputs.shape)}. For dense outputs use SegmentationTask."
            )
        return super().check_targets(outputs, targets)

    def new_meter(self) -> ClassificationMeter:
        return ClassificationMeter(self.num_classes)

    def update_meter(
        self, meter: ClassificationMeter, outputs: torch.Tensor, targets: torch.Tensor
    ) -> None:
        meter.update(self.predict_proba(outputs), targets)

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.update(
            loss=self.loss_name,
            class_weights=self.class_weights,
            class_counts=self.class_counts,
            focal_gamma=self.focal_gamma,
        )
        return out
