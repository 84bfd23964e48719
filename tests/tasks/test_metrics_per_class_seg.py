"""Pixel-level per-class metrics of segmentation and the silenced MONAI HD95 FutureWarning."""

from __future__ import annotations

import warnings

import pytest
import torch

from medprune.errors import DataError
from medprune.tasks.metrics import SegmentationMeter, segmentation_metrics


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    """A hand-made 2x4x4 pair: target has 6 foreground pixels, the prediction finds 4 of them."""
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 1  # 4 pixels
    target[1, 0, 0:2] = 1  # 2 pixels
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    pred[0, 1:3, 1:3] = 1  # all 4 found
    pred[0, 3, 3] = 1  # 1 false positive
    pred[1, 3, 0:3] = 1  # 3 false positives, both target pixels missed
    return pred, target


def test_pixel_counts_pooled_over_images() -> None:
    pred, target = _example()
    m = segmentation_metrics(pred, target, 2, hd95=False)
    fg, bg = m["per_class"][1], m["per_class"][0]
    assert [row["class"] for row in m["per_class"]] == [0, 1]
    assert (fg["tp"], fg["fp"], fg["fn"], fg["support"]) == (4, 4, 2, 6)
    assert fg["recall"] == pytest.approx(4 / 6)
    assert fg["precision"] == pytest.approx(4 / 8)
    # background is the mirror image: its FN are the foreground FP and vice versa
    assert (bg["tp"], bg["fp"], bg["fn"], bg["support"]) == (22, 2, 4, 26)
    assert bg["recall"] == pytest.approx(22 / 26)
    assert m["minority_class"] == 1
    assert m["minority_recall"] == pytest.approx(4 / 6)


def test_existing_keys_unchanged_and_pixel_counts_agree_with_pooled_dice() -> None:
    pred, target = _example()
    m = segmentation_metrics(pred, target, 2, hd95=False)
    fg = m["per_class"][1]
    pooled = 2 * fg["tp"] / (2 * fg["tp"] + fg["fp"] + fg["fn"])
    assert m["dice_pooled_per_class"] == [pytest.approx(pooled)]
    # per-image Dice: image 0 = 8/9, image 1 = 0
    assert m["dice_per_class"] == [pytest.approx((8 / 9 + 0.0) / 2)]


def test_per_class_rows_report_the_pooled_dice_of_every_class() -> None:
    pred, target = _example()
    m = segmentation_metrics(pred, target, 2, hd95=False)
    bg, fg = m["per_class"]
    assert fg["dice"] == pytest.approx(m["dice_pooled_per_class"][0])
    assert fg["dice"] == pytest.approx(2 * 4 / (2 * 4 + 4 + 2))
    assert bg["dice"] == pytest.approx(2 * 22 / (2 * 22 + 2 + 4))


def test_merge_adds_pixel_counts() -> None:
    pred, target = _example()
    a, b = SegmentationMeter(2, hd95=False), SegmentationMeter(2, hd95=False)
    a.update(pred[:1], target[:1])
    b.update(pred[1:], target[1:])
    a.merge(b)
    whole = segmentation_metrics(pred, target, 2, hd95=False)
    assert a.compute()["per_class"] == whole["per_class"]


def test_three_classes_minority_and_absent_class() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :] = 1  # 4 pixels of class 1, none of class 2
    pred = target.clone()
    pred[0, 3, 3] = 2  # a class-2 false positive
    m = segmentation_metrics(pred, target, 3, hd95=False)
    assert m["minority_class"] == 1  # class 2 is absent from the target
    assert m["per_class"][2] == {
        "class": 2,
        "recall": 0.0,
        "precision": 0.0,
        "dice": 0.0,
        "tp": 0,
        "fp": 1,
        "fn": 0,
        "support": 0,
    }
    assert m["minority_recall"] == 1.0


def test_label_out_of_range_raises() -> None:
    pred, target = _example()
    target[0, 0, 0] = 5
    with pytest.raises(DataError, match="outside the allowed range"):
        segmentation_metrics(pred, target, 2, hd95=False)


def test_hd95_emits_no_monai_future_warning() -> None:
    pred, target = _example()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = segmentation_metrics(pred, target, 2, hd95=True)
    assert m["hd95"] is not None
    future = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert not future, [str(w.message) for w in future]


def test_report_keeps_reading_dice_for_segmentation(tmp_path) -> None:
    from medprune.report import minority_class, per_class, write_report

    pred, target = _example()
    worse = pred.clone()
    worse[0, 1, 1:3] = 0  # two more foreground pixels missed

    def record(kind: str, name: str, p: torch.Tensor) -> dict:
        return {
            "kind": kind,
            "name": name,
            "target": 0.5 if kind == "run" else 0.0,
            "seed": 0,
            "task": "segmentation",
            "class_names": ["background", "polyp"],
            "metrics": segmentation_metrics(p, target, 2),
            "measurement": {"macs": 1e8, "latency_ms": 3.0},
        }

    base, run = record("base", "unpruned", pred), record("run", "pruned", worse)
    dice = base["metrics"]["dice_per_class"][0]
    assert dice != pytest.approx(base["metrics"]["per_class"][1]["recall"])  # distinguishable
    assert per_class(base) == {"polyp": pytest.approx(dice)}  # Dice, not pixel recall
    assert minority_class(base) == "polyp"
    md = write_report(tmp_path, [base, run], plots=False).markdown.read_text()
    assert "Minority Dice (polyp)" in md and f"| {dice:.3f} |" in md


def test_report_minority_falls_back_to_a_foreground_class() -> None:
    from medprune.report import minority_class

    target = torch.ones(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 0  # background is the rarer class here
    m = segmentation_metrics(target.clone(), target, 2, hd95=False)
    assert m["minority_class"] == 0
    base = {"kind": "base", "class_names": ["background", "polyp"], "metrics": m}
    assert minority_class(base) == "polyp"  # the report has Dice columns for foreground only
