"""Semantic segmentation (2D and 3D): outputs ``(B, C, *S)`` logits, targets int64 ``(B, *S)``."""

from __future__ import annotations

from typing import Any

import torch

from medprune.errors import ConfigError, ShapeMismatchError
from medprune.tasks.base import TASKS, Task
from medprune.tasks.losses import create_segmentation_loss
from medprune.tasks.metrics import SegmentationMeter

__all__ = ["SegmentationTask"]


@TASKS.register("segmentation")
class SegmentationTask(Task):
    """Segmentation with Dice + CE (MONAI) by default; the primary metric is the mean foreground Dice.

    Args:
        num_classes: ``C`` including background (binary segmentation: 2).
        loss: ``"dice_ce"``, ``"ce"`` or ``"dice"``.
        spatial_dims: 2 (``S = (H, W)``) or 3 (``S = (D, H, W)``).
        include_background: whether the Dice term includes class 0.
        hd95: compute HD95 during evaluation (a distance transform per image and class).
        spacing: pixel / voxel spacing for HD95 (None = 1 per axis).
    """

    kind = "segmentation"
    primary_metric = "dice"

    def __init__(
        self,
        num_classes: int,
        *,
        loss: str = "dice_ce",
        spatial_dims: int = 2,
        include_background: bool = False,
        hd95: bool = True,
        spacing: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(num_classes)
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3; got {spatial_dims!r}.")
        if spacing is not None and len(spacing) != spatial_dims:
            raise ConfigError(
                f"spacing must have {spatial_dims} entries (one per spatial axis); got {spacing!r}."
            )
        self.spatial_dims = spatial_dims
        self.loss_name = loss
        self.include_background = include_background
        self.hd95 = hd95
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        kwargs = {} if loss == "ce" else {"include_background": include_background}
        self.loss_fn = create_segmentation_loss(loss, num_classes, **kwargs)

    def check_targets(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.ndim != 2 + self.spatial_dims:
            raise ShapeMismatchError(
                f"segmentation outputs with spatial_dims={self.spatial_dims} must be "
                f"(B, {self.num_classes}, {', '.join('DHW'[3 - self.spatial_dims :])}) logits; got "
                f"{tuple(outputs.shape)}."
            )
        return super().check_targets(outputs, targets)

    def new_meter(self) -> SegmentationMeter:
        return SegmentationMeter(self.num_classes, hd95=self.hd95, spacing=self.spacing)

    def update_meter(
        self, meter: SegmentationMeter, outputs: torch.Tensor, targets: torch.Tensor
    ) -> None:
        meter.update(self.predict(outputs), targets)

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.update(
            loss=self.loss_name,
            spatial_dims=self.spatial_dims,
            include_background=self.include_background,
            hd95=self.hd95,
            spacing=self.spacing,
        )
        return out
