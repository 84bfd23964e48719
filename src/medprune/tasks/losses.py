"""Losses for imbalanced medical tasks: (class-weighted) cross-entropy, focal, Dice + CE, Dice.

Every loss takes logits and int64 class-index targets, following the batch conventions:

- classification: ``outputs (B, C)``, ``targets (B,)``;
- segmentation: ``outputs (B, C, *S)``, ``targets (B, *S)``.

:func:`check_targets` validates both before any loss or metric sees them, and reads the other
forms of :mod:`medprune.tasks.targets` too: a ``(B, 1)`` / ``(B, 1, *S)`` channel dim (int, or
float holding whole numbers, as MONAI's ``LoadImage`` gives) and one-hot ``(B, C)`` /
``(B, C, *S)`` maps.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medprune.errors import ConfigError, ShapeMismatchError
from medprune.tasks.targets import targets_for_outputs

__all__ = [
    "DiceCELoss",
    "DiceLoss",
    "FocalLoss",
    "check_loss_name",
    "check_targets",
    "create_classification_loss",
    "create_segmentation_loss",
    "inverse_frequency_weights",
]

CLASSIFICATION_LOSSES = ("ce", "weighted_ce", "focal")
SEGMENTATION_LOSSES = ("dice_ce", "ce", "dice")


def _check_name(name: str, allowed: tuple[str, ...], what: str) -> None:
    if name in allowed:
        return
    close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"Unknown {what} {name!r}.{hint} Available: {', '.join(allowed)}.")


def check_loss_name(task: str, name: str) -> None:
    """Raise :class:`ConfigError` (with a did-you-mean) unless ``name`` is a loss of ``task``
    (``"classification"`` or ``"segmentation"``): the check the loss factories run first."""
    if task == "segmentation":
        _check_name(name, SEGMENTATION_LOSSES, "segmentation loss")
    else:
        _check_name(name, CLASSIFICATION_LOSSES, "classification loss")


def check_targets(outputs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Validate ``targets`` against ``outputs`` and return them as int64 ``(B, *S)``.

    Args:
        outputs: logits ``(B, C)`` or ``(B, C, *S)``; with ``num_classes=2`` also a single
            (sigmoid) foreground logit ``(B, 1)`` / ``(B, 1, *S)``.
        targets: class indices ``(B,)`` / ``(B, *S)``; ``(B, 1)`` / ``(B, 1, *S)`` are squeezed;
            bool masks are read as 0/1, floats holding whole numbers as those classes; one-hot /
            probability maps ``(B, C)`` / ``(B, C, *S)`` are read by ``argmax``.
        num_classes: ``C``.

    Raises:
        ShapeMismatchError: ``outputs`` does not have ``num_classes`` channels in dim 1, or the
            targets have none of the accepted shapes.
        DataError: float targets that are not whole numbers, a channel-dim target that is not
            one-hot-like, or a label outside ``[0, num_classes - 1]``.
    """
    binary_logit = num_classes == 2 and outputs.ndim >= 2 and outputs.shape[1] == 1
    if outputs.ndim < 2 or (outputs.shape[1] != num_classes and not binary_logit):
        raise ShapeMismatchError(
            f"model outputs must be (B, {num_classes}) or (B, {num_classes}, *S) logits for "
            f"num_classes={num_classes}; got shape {tuple(outputs.shape)}. Check the model's "
            "num_classes / out_channels."
        )
    targets = targets_for_outputs(outputs, targets)  # (B,) / (B, *S) int64 in [0, C - 1]
    return targets.long()


def inverse_frequency_weights(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Class weights ``N / (C * n_c)`` (scikit-learn's ``"balanced"``): 1.0 for a balanced set.

    Args:
        class_counts: number of training samples per class, length ``C``.

    Returns:
        float32 ``(C,)``.

    Raises:
        ConfigError: a count is zero or negative.
    """
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() < 2 or bool((counts <= 0).any()):
        raise ConfigError(
            f"class_counts must hold a positive count for each of >= 2 classes; got "
            f"{counts.long().tolist()}. A class with no samples cannot be weighted: drop it or "
            "pass class_weights explicitly."
        )
    return (counts.sum() / (counts.numel() * counts)).float()


def _as_weights(
    weights: Sequence[float] | torch.Tensor, num_classes: int, what: str
) -> torch.Tensor:
    w = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if w.numel() != num_classes or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ConfigError(
            f"{what} must hold {num_classes} finite non-negative numbers (one per class); got "
            f"{w.tolist()}."
        )
    return w


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al., 2017) on logits.

    ``FL = -alpha_t (1 - p_t)^gamma log p_t``, averaged as ``sum(FL) / sum(alpha_t)`` (``/ N``
    without ``alpha``), so ``gamma=0`` gives exactly ``F.cross_entropy(weight=alpha)``.

    Args:
        gamma: focusing parameter >= 0.
        alpha: optional per-class weights ``(C,)``.

    Shapes: ``outputs (B, C)`` or ``(B, C, *S)``, ``targets (B,)`` or ``(B, *S)`` int64.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(gamma, (int, float)) or gamma < 0:
            raise ConfigError(f"focal gamma must be a number >= 0; got {gamma!r}.")
        self.gamma = float(gamma)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha).float())

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(outputs.float(), dim=1)  # (B, C, *S)
        log_pt = log_p.gather(1, targets.unsqueeze(1)).squeeze(1)  # (B, *S)
        focal = (1.0 - log_pt.exp()).clamp_min(0.0).pow(self.gamma) * -log_pt
        if self.alpha is None:
            return focal.mean()
        alpha_t = self.alpha.to(outputs.device)[targets]  # (B, *S)
        return (alpha_t * focal).sum() / alpha_t.sum().clamp_min(1e-12)


class DiceCELoss(nn.Module):
    """MONAI ``DiceCELoss`` (softmax, one-hot targets) on int64 ``(B, *S)`` targets.

    Args:
        include_background: whether the Dice term includes class 0 (CE always does).
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
    """

    def __init__(
        self, *, include_background: bool = False, lambda_dice: float = 1.0, lambda_ce: float = 1.0
    ) -> None:
        super().__init__()
        from monai.losses import DiceCELoss as _MonaiDiceCE

        self.inner = _MonaiDiceCE(
            include_background=include_background,
            to_onehot_y=True,
            softmax=True,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
        )

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner(outputs, targets.unsqueeze(1))  # targets (B, 1, *S)


class DiceLoss(nn.Module):
    """MONAI ``DiceLoss`` (softmax, one-hot targets) on int64 ``(B, *S)`` targets."""

    def __init__(self, *, include_background: bool = False) -> None:
        super().__init__()
        from monai.losses import DiceLoss as _MonaiDice

        self.inner = _MonaiDice(
            include_background=include_background, to_onehot_y=True, softmax=True
        )

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner(outputs, targets.unsqueeze(1))  # targets (B, 1, *S)


class _CrossEntropy(nn.Module):
    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(outputs.device)
        return F.cross_entropy(outputs, targets, weight=weight)


def create_classification_loss(
    name: str,
    num_classes: int,
    *,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    class_counts: Sequence[int] | torch.Tensor | None = None,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """Build a classification loss ``(outputs (B, C), targets (B,)) -> scalar``.

    Args:
        name: ``"ce"`` (``class_weights`` optional), ``"weighted_ce"`` (``class_weights``, or inverse
            frequency weights from ``class_counts``), ``"focal"`` (``alpha`` = ``class_weights`` or
            inverse frequency from ``class_counts``, else none).
        num_classes: ``C``.
        class_weights: per-class weights ``(C,)``.
        class_counts: per-class training counts ``(C,)``.
        focal_gamma: focal-loss gamma.
    """
    _check_name(name, CLASSIFICATION_LOSSES, "classification loss")
    weights: torch.Tensor | None = None
    if class_weights is not None:
        weights = _as_weights(class_weights, num_classes, "class_weights")
    elif class_counts is not None:
        weights = inverse_frequency_weights(class_counts)
        if weights.numel() != num_classes:
            raise ConfigError(
                f"class_counts must have {num_classes} entries; got {weights.numel()}."
            )
    if name == "weighted_ce" and weights is None:
        raise ConfigError(
            "loss='weighted_ce' needs class_weights=[...] or class_counts=[...] (training samples "
            "per class); got neither."
        )
    if name == "focal":
        return FocalLoss(gamma=focal_gamma, alpha=weights)
    return _CrossEntropy(weights)


def create_segmentation_loss(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a segmentation loss ``(outputs (B, C, *S), targets (B, *S)) -> scalar``.

    Args:
        name: ``"dice_ce"`` (MONAI DiceCELoss), ``"ce"``, ``"dice"`` (MONAI DiceLoss).
        num_classes: ``C`` (>= 2; binary segmentation has 2).
        **kwargs: passed to :class:`DiceCELoss` / :class:`DiceLoss` (e.g. ``include_background``).
    """
    _check_name(name, SEGMENTATION_LOSSES, "segmentation loss")
    if name == "ce":
        return _CrossEntropy(None)
    if name == "dice":
        return DiceLoss(**kwargs)
    return DiceCELoss(**kwargs)
