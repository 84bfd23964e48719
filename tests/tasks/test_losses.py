"""Losses: focal vs CE, class weights vs a hand computation, MONAI Dice + CE, target validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medprune.errors import ConfigError, DataError, ShapeMismatchError
from medprune.tasks import (
    ClassificationTask,
    FocalLoss,
    SegmentationTask,
    check_targets,
    inverse_frequency_weights,
)


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 5), (2, 3, 2, 3, 4)])
def test_focal_with_gamma_zero_is_cross_entropy(shape: tuple[int, ...]) -> None:
    logits = torch.randn(*shape, dtype=torch.float64)
    targets = torch.randint(0, 3, (shape[0], *shape[2:]))
    torch.testing.assert_close(
        FocalLoss(gamma=0.0)(logits, targets).double(), F.cross_entropy(logits, targets)
    )
    alpha = torch.tensor([0.2, 1.0, 3.0])
    torch.testing.assert_close(
        FocalLoss(gamma=0.0, alpha=alpha)(logits, targets).double(),
        F.cross_entropy(logits, targets, weight=alpha.double()),
    )


def test_focal_down_weights_easy_examples() -> None:
    logits = torch.tensor([[4.0, -4.0], [0.1, 0.0]])  # one confident-correct, one uncertain
    targets = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, targets, reduction="none")
    p_t = torch.softmax(logits, 1)[:, 0]
    expected = ((1 - p_t) ** 2 * ce).mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, targets), expected)
    assert FocalLoss(gamma=2.0)(logits, targets) < F.cross_entropy(logits, targets)


def test_weighted_ce_matches_manual_inverse_frequency() -> None:
    counts = [90, 10]
    weights = inverse_frequency_weights(counts)
    torch.testing.assert_close(weights, torch.tensor([100 / (2 * 90), 100 / (2 * 10)]))
    task = ClassificationTask(2, loss="weighted_ce", class_counts=counts)
    logits = torch.tensor([[2.0, 0.5], [0.3, 0.1], [-1.0, 1.0]])
    targets = torch.tensor([0, 1, 1])
    log_p = torch.log_softmax(logits, 1)
    w_t = weights[targets]
    manual = -(w_t * log_p[torch.arange(3), targets]).sum() / w_t.sum()
    torch.testing.assert_close(task.loss(logits, targets), manual)
    explicit = ClassificationTask(2, loss="ce", class_weights=[1.0, 9.0])
    assert explicit.loss(logits, targets) != task.loss(logits, targets)


def test_weighted_ce_needs_weights_or_counts() -> None:
    with pytest.raises(ConfigError, match="needs class_weights"):
        ClassificationTask(2, loss="weighted_ce")
    with pytest.raises(ConfigError, match="positive count"):
        inverse_frequency_weights([10, 0])
    with pytest.raises(ConfigError, match="must hold 3 finite"):
        ClassificationTask(3, loss="ce", class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="Did you mean 'focal'"):
        ClassificationTask(2, loss="focl")  # type: ignore[arg-type]


def test_bad_labels_name_value_and_range() -> None:
    task = ClassificationTask(3)
    logits = torch.zeros(2, 3)
    with pytest.raises(DataError, match=r"label 5 is outside the allowed range \[0, 2\]"):
        task.loss(logits, torch.tensor([0, 5]))
    with pytest.raises(DataError, match=r"label -1 is outside"):
        task.loss(logits, torch.tensor([-1, 0]))
    with pytest.raises(DataError, match="integer class indices"):
        task.loss(logits, torch.tensor([0.0, 1.5]))  # whole-number floats are read
    with pytest.raises(ShapeMismatchError, match=r"targets must have shape \(2,\)"):
        task.loss(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(ShapeMismatchError, match="num_classes=3"):
        task.loss(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_check_targets_squeezes_channel_and_reads_bool_masks() -> None:
    outputs = torch.zeros(2, 2, 4, 4)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 1, 1] = True
    out = check_targets(outputs, mask, 2)
    assert out.dtype == torch.int64 and out.shape == (2, 4, 4) and int(out.sum()) == 1


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dice_ce_matches_monai_on_one_hot(spatial_dims: int) -> None:
    from monai.losses import DiceCELoss

    s = (6,) * spatial_dims
    logits = torch.randn(2, 3, *s)
    targets = torch.randint(0, 3, (2, *s))
    task = SegmentationTask(3, loss="dice_ce", spatial_dims=spatial_dims)
    one_hot = F.one_hot(targets, 3).movedim(-1, 1).float()  # (B, C, *S)
    monai = DiceCELoss(softmax=True, include_background=False)
    # MONAI's CE term on one-hot targets equals index CE; Dice terms identical
    torch.testing.assert_close(task.loss(logits, targets), monai(logits, one_hot))
    dice_only = SegmentationTask(3, loss="dice", spatial_dims=spatial_dims).loss(logits, targets)
    ce_only = SegmentationTask(3, loss="ce", spatial_dims=spatial_dims).loss(logits, targets)
    torch.testing.assert_close(task.loss(logits, targets), dice_only + ce_only)


def test_segmentation_shapes_are_checked() -> None:
    task = SegmentationTask(2, spatial_dims=3)
    with pytest.raises(ShapeMismatchError, match="spatial_dims=3"):
        task.loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ShapeMismatchError, match=r"targets must have shape \(1, 4, 4, 4\)"):
        task.loss(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(DataError, match=r"label 2 is outside the allowed range \[0, 1\]"):
        task.loss(torch.zeros(1, 2, 2, 2, 2), torch.full((1, 2, 2, 2), 2))
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        SegmentationTask(2, spatial_dims=1)
