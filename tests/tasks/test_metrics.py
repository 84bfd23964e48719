"""Metrics against scikit-learn / MONAI on fixed arrays, plus hand-worked numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from medprune.errors import DataError, ShapeMismatchError
from medprune.tasks import SegmentationMeter, classification_metrics, segmentation_metrics

Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # pred 0
        [0.3, 0.6, 0.1],  # pred 1 (error)
        [0.5, 0.3, 0.2],  # pred 0
        [0.2, 0.7, 0.1],  # pred 1
        [0.1, 0.4, 0.5],  # pred 2 (error)
        [0.2, 0.2, 0.6],  # pred 2
    ]
)


def test_hand_worked_confusion_matrix_and_per_class() -> None:
    m = classification_metrics(Y_TRUE, PROBS)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    c1 = m["per_class"][1]
    assert (c1["tp"], c1["fn"], c1["fp"], c1["tn"], c1["support"]) == (1, 1, 1, 3, 2)
    assert c1["recall"] == pytest.approx(0.5) and c1["precision"] == pytest.approx(0.5)
    assert m["per_class"][0]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"][2]["precision"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["minority_class"] == 2 and m["minority_recall"] == pytest.approx(1.0)
    assert m["class_counts"] == [3, 2, 1]
    json.dumps(m)  # plain JSON types only


def test_multiclass_matches_sklearn_including_one_vs_rest_auc() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(torch.as_tensor(y), torch.as_tensor(probs))
    pred = probs.argmax(1)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    expected_auc = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert m["auc_roc"] == pytest.approx(expected_auc) and m["auc_roc_reason"] is None


def test_binary_auc_and_minority() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.3])
    m = classification_metrics(y, np.stack([1 - p1, p1], 1))
    assert m["auc_roc"] == pytest.approx(roc_auc_score(y, p1))
    assert m["minority_class"] == 1
    assert m["minority_recall"] == pytest.approx(0.5)  # 0.9 -> 1, 0.3 -> 0
    assert m["per_class"][1]["fn"] == 1 and m["per_class"][1]["fp"] == 1


def test_auc_is_none_with_reason_for_a_single_class() -> None:
    m = classification_metrics(np.zeros(4, dtype=int), np.full((4, 2), 0.5))
    assert m["auc_roc"] is None and "only class 0" in m["auc_roc_reason"]


def test_classification_metric_errors() -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(N,\) and probs \(N, C>=2\)"):
        classification_metrics(np.zeros(3, dtype=int), np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"label 3 is outside the allowed range \[0, 1\]"):
        classification_metrics(np.array([0, 3]), np.full((2, 2), 0.5))


def _one_hot(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels, c).movedim(-1, 1).float()  # (B, *S) -> (B, C, *S)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_segmentation_matches_monai(spatial_dims: int) -> None:
    from monai.metrics import DiceMetric, MeanIoU, compute_hausdorff_distance

    g = torch.Generator().manual_seed(1)
    s = (12,) * spatial_dims
    target = torch.randint(0, 3, (3, *s), generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target, 1)
    meter = SegmentationMeter(3)
    meter.update(pred[:2], target[:2])  # accumulate over two batches
    meter.update(pred[2:], target[2:])
    got = meter.compute()
    yp, yt = _one_hot(pred, 3), _one_hot(target, 3)
    dice_metric = DiceMetric(include_background=False, reduction="mean_batch")
    iou_metric = MeanIoU(include_background=False, reduction="mean_batch")
    dice_metric(yp, yt)
    iou_metric(yp, yt)
    dice, iou = dice_metric.aggregate(), iou_metric.aggregate()  # (C - 1,) mean over images
    hd = compute_hausdorff_distance(yp, yt, include_background=False, percentile=95).mean(0)
    np.testing.assert_allclose(got["dice_per_class"], dice.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["iou_per_class"], iou.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["hd95_per_class"], hd.numpy(), rtol=1e-6)
    assert got["dice"] == pytest.approx(float(dice.mean()))
    assert got["foreground_classes"] == [1, 2]
    json.dumps(got)


def test_segmentation_empty_mask_conventions() -> None:
    target = torch.zeros(3, 8, 8, dtype=torch.long)
    pred = torch.zeros(3, 8, 8, dtype=torch.long)
    target[0, 2:4, 2:4] = 1
    pred[0, 2:4, 2:5] = 1  # image 0: overlap, dice = 2*4 / (4 + 6)
    pred[1, 0, 0] = 1  # image 1: empty truth, one false-positive pixel -> dice 0, hd95 diagonal
    # image 2: both empty -> skipped
    m = segmentation_metrics(pred, target, 2)
    assert m["n_images_per_class"] == [2]
    assert m["dice"] == pytest.approx((0.8 + 0.0) / 2)
    assert m["iou"] == pytest.approx((4 / 6 + 0.0) / 2)
    assert m["hd95_empty_penalised"] == [1]
    assert m["hd95"] == pytest.approx((1.0 + math.sqrt(8**2 + 8**2)) / 2)
    assert m["dice_pooled_per_class"] == [pytest.approx(2 * 4 / (2 * 4 + 3))]


def test_meters_merge_like_one_pass() -> None:
    target = torch.randint(0, 2, (4, 10, 10))
    pred = torch.randint(0, 2, (4, 10, 10))
    a, b, whole = SegmentationMeter(2), SegmentationMeter(2), SegmentationMeter(2)
    a.update(pred[:1], target[:1])
    b.update(pred[1:], target[1:])
    whole.update(pred, target)
    a.merge(b)
    merged, one_pass = a.compute(), whole.compute()
    assert merged.keys() == one_pass.keys()
    for key in ("dice", "iou", "hd95"):
        assert merged[key] == pytest.approx(one_pass[key])
    assert merged["n_images_per_class"] == one_pass["n_images_per_class"] == [4]
    m = segmentation_metrics(np.zeros((1, 4, 4), int), np.zeros((1, 4, 4), int), 2)
    assert m["dice"] is None and m["dice_per_class"] == [None]
