"""Task metrics as plain JSON-serialisable dicts (floats, ints, lists, None).

Classification metrics come from scikit-learn; segmentation Dice / IoU are counted here per image
and HD95 comes from MONAI's ``compute_hausdorff_distance(percentile=95)``. The per-batch
accumulators (:class:`ClassificationMeter`, :class:`SegmentationMeter`) can be merged, which is how
:func:`medprune.tasks.evaluate` combines the shards of several ranks.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from medprune.errors import DataError, ShapeMismatchError
from medprune.tasks.targets import class_indices

__all__ = [
    "ClassificationMeter",
    "SegmentationMeter",
    "classification_metrics",
    "segmentation_metrics",
]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _auc_roc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float | None, str | None]:
    """Binary AUC on ``probs[:, 1]``; multi-class: macro mean of one-vs-rest AUCs."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y_true)
    if present.size < 2:
        return None, f"AUC-ROC is undefined: y_true holds only class {int(present[0])}."
    if probs.shape[1] == 2:
        return float(roc_auc_score(y_true, probs[:, 1])), None
    per_class = [roc_auc_score(y_true == c, probs[:, c]) for c in present]
    reason = None
    if present.size < probs.shape[1]:
        absent = sorted(set(range(probs.shape[1])) - set(present.tolist()))
        reason = f"one-vs-rest macro over the classes present; classes {absent} absent from y_true."
    return float(np.mean(per_class)), reason


def classification_metrics(y_true: Any, probs: Any) -> dict[str, Any]:
    """Metrics of a classifier from labels and class probabilities.

    Args:
        y_true: int labels ``(N,)`` in ``[0, C - 1]`` (array or tensor).
        probs: class probabilities (or any scores) ``(N, C)``; predictions are ``argmax(probs, 1)``.

    Returns:
        ``n``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in
        ``y_true``), ``macro_f1``, ``auc_roc`` (binary, or one-vs-rest macro for ``C > 2``; None
        when ``y_true`` holds a single class, with ``auc_roc_reason``), ``per_class`` (list indexed
        by class of ``{class, recall, precision, f1, tp, fp, fn, tn, support}``; recall / precision
        are 0.0 when undefined, as scikit-learn's ``zero_division=0``), ``confusion_matrix``
        (``[true][pred]``), ``class_counts``, ``minority_class`` (the least frequent class present
        in ``y_true``, lowest index on ties) and ``minority_recall``.

    Raises:
        ShapeMismatchError: shapes other than ``(N,)`` and ``(N, C)`` with the same ``N``.
        DataError: empty input, a label outside ``[0, C - 1]``, or non-finite probabilities.
    """
    y = _to_numpy(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # (N, 1) -> (N,), the MedMNIST label layout
    y = y.astype(np.int64)
    p = _to_numpy(probs).astype(np.float64)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0] or p.shape[1] < 2:
        raise ShapeMismatchError(
            f"classification_metrics needs y_true (N,) and probs (N, C>=2); got "
            f"{tuple(y.shape)} and {tuple(p.shape)}."
        )
    n, c = p.shape
    if n == 0:
        raise DataError("classification_metrics got no samples (N=0); the loader was empty.")
    if y.min() < 0 or y.max() >= c:
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise DataError(f"label {bad} is outside the allowed range [0, {c - 1}].")
    if not np.isfinite(p).all():
        raise DataError("probs contain NaN or inf; the model diverged or the inputs are corrupt.")
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    pred = p.argmax(1)
    labels = list(range(c))
    cm = confusion_matrix(y, pred, labels=labels)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
        warnings.simplefilter("ignore")
        balanced = float(balanced_accuracy_score(y, pred))
    f1_each = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    per_class = []
    for k in labels:
        tp = int(cm[k, k])
        fn = int(cm[k].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        support = tp + fn
        per_class.append(
            {
                "class": k,
                "recall": tp / support if support else 0.0,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "f1": float(f1_each[k]),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": n - tp - fp - fn,
                "support": support,
            }
        )
    counts = np.bincount(y, minlength=c)
    present = np.flatnonzero(counts)
    minority = int(present[np.argmin(counts[present])])
    auc, reason = _auc_roc(y, p)
    return {
        "n": int(n),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": balanced,
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "auc_roc": auc,
        "auc_roc_reason": reason,
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "class_counts": counts.astype(int).tolist(),
        "minority_class": minority,
        "minority_recall": per_class[minority]["recall"],
    }


class ClassificationMeter:
    """Collects ``(labels (B,), probs (B, C))`` batches; :meth:`compute` gives the metrics dict."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.labels: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``probs (B, C)``, ``targets (B,)`` (or ``(B, 1)`` / one-hot ``(B, C)``)."""
        probs_np = _to_numpy(probs).astype(np.float64).reshape(-1, self.num_classes)
        labels = torch.as_tensor(_to_numpy(targets))
        labels = class_indices(labels, (probs_np.shape[0],), num_classes=self.num_classes)
        self.probs.append(probs_np)
        self.labels.append(labels.numpy().astype(np.int64))

    def merge(self, other: ClassificationMeter) -> None:
        """Append another meter's samples (e.g. another rank's shard)."""
        self.labels.extend(other.labels)
        self.probs.extend(other.probs)

    def compute(self) -> dict[str, Any]:
        if not self.labels:
            raise DataError("no batches were evaluated; the loader was empty.")
        return classification_metrics(np.concatenate(self.labels), np.concatenate(self.probs))


_MONAI_EDGES_WARNING = r".*always_return_as_numpy.*"


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


class SegmentationMeter:
    """Accumulates per-image Dice, IoU and HD95 of each foreground class over batches.

    Conventions for empty masks, per image and foreground class ``c``:

    - Dice / IoU: computed per image, then averaged over images. An image where neither the
      ground truth nor the prediction contains ``c`` is skipped (no information). An image whose
      ground truth lacks ``c`` but whose prediction has it scores 0 (a false positive counts), as
      MONAI's ``DiceMetric(ignore_empty=False)`` does.
    - HD95 (pixels, or physical units with ``spacing``): MONAI's 95th-percentile symmetric
      Hausdorff distance when both masks are non-empty; skipped when both are empty; when exactly
      one is empty it is the image diagonal (the largest possible distance) so a missed or
      hallucinated structure is penalised with a finite number. ``hd95_empty_penalised`` counts
      those cases.

    Also reported: ``dice_std_per_class``, the spread of the per-image Dice (with
    ``n_images_per_class`` it gives the standard error a report quotes);
    ``dice_pooled_per_class``, Dice from the true / false positives and false
    negatives pooled over all images. Classes never seen in any image give None.

    Pixel-level figures, pooled over all evaluated images and shaped like the classification
    metrics (so :class:`~medprune.methods.guard.RecallGuard` works on segmentation): ``per_class``,
    a list indexed by class (background 0 included) of ``{class, recall, precision, dice, tp, fp,
    fn, support}`` counted over pixels (``support`` = target pixels of the class; recall / precision
    are 0.0 when undefined; ``dice`` = ``2 tp / (2 tp + fp + fn)``, the pooled Dice, None when the
    class is in neither mask), ``minority_class`` (the class with the fewest target pixels among
    those present, lowest index on ties) and ``minority_recall``.

    Args:
        num_classes: ``C`` including background (class 0).
        hd95: compute HD95 (the slowest part, a distance transform per image and class).
        spacing: pixel / voxel spacing for HD95 (None = 1).
    """

    def __init__(
        self, num_classes: int, *, hd95: bool = True, spacing: tuple[float, ...] | None = None
    ) -> None:
        self.num_classes = num_classes
        self.hd95 = hd95
        self.spacing = spacing
        k = num_classes - 1
        self.dice: list[list[float]] = [[] for _ in range(k)]
        self.iou: list[list[float]] = [[] for _ in range(k)]
        self.hd: list[list[float]] = [[] for _ in range(k)]
        self.hd_penalised = [0] * k
        self.pooled = np.zeros((k, 3), dtype=np.int64)  # tp, fp, fn per foreground class
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # pixels [true][pred]

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of label maps: ``pred (B, *S)`` and ``target (B, *S)``, int in ``[0, C-1]``.

        ``target`` may also come as ``(B, 1, *S)`` or one-hot ``(B, C, *S)``
        (:mod:`medprune.tasks.targets`).
        """
        target = class_indices(target.detach(), tuple(pred.shape), num_classes=self.num_classes)
        pred, target = pred.detach().cpu().long(), target.cpu()
        self._add_pixels(pred, target)
        b = pred.shape[0]
        dims = tuple(range(1, pred.ndim))
        diagonal = math.sqrt(
            sum(
                (s * (self.spacing[i] if self.spacing else 1.0)) ** 2
                for i, s in enumerate(pred.shape[1:])
            )
        )
        for c in range(1, self.num_classes):
            p, t = pred == c, target == c  # (B, *S)
            tp = (p & t).sum(dims)
            fp = (p & ~t).sum(dims)
            fn = (~p & t).sum(dims)
            self.pooled[c - 1] += [int(tp.sum()), int(fp.sum()), int(fn.sum())]
            for i in range(b):
                denom = int(tp[i] + fp[i] + fn[i])
                if denom == 0:  # class absent from both masks
                    continue
                self.dice[c - 1].append(2 * int(tp[i]) / (denom + int(tp[i])))
                self.iou[c - 1].append(int(tp[i]) / denom)
                if self.hd95:
                    self._add_hd95(c, p[i], t[i], diagonal)

    def _add_pixels(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add label maps ``(B, *S)`` to the pixel confusion matrix ``(C, C)``."""
        c = self.num_classes
        for name, labels in (("target", target), ("prediction", pred)):
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
                bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
                raise DataError(
                    f"{name} label {bad} is outside the allowed range [0, {c - 1}] "
                    f"(num_classes={c}); remap ignore labels before evaluating."
                )
        flat = (target.reshape(-1) * c + pred.reshape(-1)).bincount(minlength=c * c)
        self.confusion += flat.reshape(c, c).numpy()

    def _add_hd95(self, c: int, p: torch.Tensor, t: torch.Tensor, diagonal: float) -> None:
        if not bool(p.any()) or not bool(t.any()):
            self.hd[c - 1].append(diagonal)
            self.hd_penalised[c - 1] += 1
            return
        from monai.metrics import compute_hausdorff_distance

        with warnings.catch_warnings():
            # MONAI 1.5-1.6 pass the deprecated always_return_as_numpy to get_mask_edges
            # themselves, which warns on every call; silence exactly that warning here.
            warnings.filterwarnings("ignore", message=_MONAI_EDGES_WARNING, category=FutureWarning)
            value = compute_hausdorff_distance(
                p[None, None].float(),  # (1, 1, *S): one image, one (foreground) channel
                t[None, None].float(),
                include_background=True,
                percentile=95,
                spacing=list(self.spacing) if self.spacing else None,
            )
        self.hd[c - 1].append(float(value.item()))

    def merge(self, other: SegmentationMeter) -> None:
        """Add another meter's images (e.g. another rank's shard)."""
        for k in range(self.num_classes - 1):
            self.dice[k].extend(other.dice[k])
            self.iou[k].extend(other.iou[k])
            self.hd[k].extend(other.hd[k])
            self.hd_penalised[k] += other.hd_penalised[k]
        self.pooled += other.pooled
        self.confusion += other.confusion

    def _pixel_per_class(self) -> list[dict[str, Any]]:
        cm = self.confusion
        rows = []
        for k in range(self.num_classes):
            tp = int(cm[k, k])
            fn = int(cm[k].sum()) - tp
            fp = int(cm[:, k].sum()) - tp
            support = tp + fn
            rows.append(
                {
                    "class": k,
                    "recall": tp / support if support else 0.0,
                    "precision": tp / (tp + fp) if tp + fp else 0.0,
                    "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
                    "tp": tp,
                    "fp": fp,
                    "fn": fn,
                    "support": support,
                }
            )
        return rows

    def compute(self) -> dict[str, Any]:
        """``dice``, ``iou``, ``hd95`` (means over foreground classes), their ``*_per_class``, and
        the pixel-level ``per_class`` / ``minority_class`` / ``minority_recall``."""
        dice = [float(np.mean(v)) if v else math.nan for v in self.dice]
        iou = [float(np.mean(v)) if v else math.nan for v in self.iou]
        hd = [float(np.mean(v)) if v else math.nan for v in self.hd]
        pooled = [
            float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else math.nan
            for tp, fp, fn in self.pooled.tolist()
        ]

        def clean(values: list[float]) -> list[float | None]:
            return [None if math.isnan(v) else v for v in values]

        per_class = self._pixel_per_class()
        support = np.array([row["support"] for row in per_class])
        present = np.flatnonzero(support)
        minority = int(present[np.argmin(support[present])]) if present.size else None
        return {
            "dice": _nanmean(dice),
            "iou": _nanmean(iou),
            "hd95": _nanmean(hd) if self.hd95 else None,
            "foreground_classes": list(range(1, self.num_classes)),
            "dice_per_class": clean(dice),
            "dice_std_per_class": clean([float(np.std(v)) if v else math.nan for v in self.dice]),
            "iou_per_class": clean(iou),
            "hd95_per_class": clean(hd) if self.hd95 else None,
            "dice_pooled_per_class": clean(pooled),
            "n_images_per_class": [len(v) for v in self.dice],
            "hd95_empty_penalised": list(self.hd_penalised),
            "per_class": per_class,
            "minority_class": minority,
            "minority_recall": per_class[minority]["recall"] if minority is not None else None,
        }


def segmentation_metrics(
    pred: Any,
    target: Any,
    num_classes: int,
    *,
    hd95: bool = True,
    spacing: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """Dice, IoU and HD95 of label maps ``pred (N, *S)`` vs ``target (N, *S)`` in one call.

    See :class:`SegmentationMeter` for the empty-mask conventions; use the meter to accumulate
    over batches.
    """
    meter = SegmentationMeter(num_classes, hd95=hd95, spacing=spacing)
    meter.update(torch.as_tensor(_to_numpy(pred)), torch.as_tensor(_to_numpy(target)))
    return meter.compute()
