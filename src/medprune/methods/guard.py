"""The false-negative guard: accept a pruned model only if the important class keeps its recall.

``RecallGuard`` answers "is the important-class recall of this model at most ``max_recall_drop``
below the reference model's?" on a validation loader. Recall = 1 - FN / support, so a recall drop
of ``d`` is exactly ``d * support`` more false negatives. It implements the
:class:`medprune.methods.base.Guard` protocol, so every method can use it through
``MethodContext(guard=...)``: "50% fewer MACs, important-class recall no more than 1 point lower" is
``Target(macs=0.5)`` with ``RecallGuard(task, val_loader, max_recall_drop=0.01)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.methods._training import evaluate
from medprune.tasks import split_batch
from medprune.tasks.targets import class_indices_like_inputs

__all__ = ["RecallGuard", "class_counts", "minority_class"]


def class_counts(loader: Iterable[Any], num_classes: int | None = None) -> torch.Tensor:
    """Label counts ``(K,)`` of a loader (uses ``loader.dataset.labels`` when available).

    Classification targets ``(B,)`` and segmentation targets ``(B, *S)`` (pixels) are both counted,
    in any form of :mod:`medprune.tasks.targets` (a size-1 channel dim, or one-hot maps).
    """
    labels = getattr(getattr(loader, "dataset", None), "labels", None)
    if labels is not None:
        flat = torch.as_tensor(labels).reshape(-1).long()
    else:
        parts = []
        for batch in loader:
            inputs, targets = split_batch(batch)
            t = class_indices_like_inputs(inputs, targets, num_classes=num_classes)
            parts.append(t.reshape(-1).cpu())
        flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    if flat.numel() == 0:
        raise ConfigError("cannot count classes: the loader yielded no targets.")
    size = max(int(flat.max()) + 1, num_classes or 0)
    return torch.bincount(flat, minlength=size)


def minority_class(loader: Iterable[Any], num_classes: int | None = None) -> int:
    """The least frequent class present in ``loader`` (lowest index on ties)."""
    counts = class_counts(loader, num_classes)
    present = counts.clone().float()
    present[counts == 0] = float("inf")
    return int(torch.argmin(present))


class RecallGuard:
    """Rejects models whose important-class recall falls more than ``max_recall_drop`` below a reference.

    Args:
        task: task whose ``evaluate(model, loader)`` returns ``per_class`` metrics
            (``{class: {"recall", "fn", "fp", "support", ...}}`` as a dict or list).
        val_loader: validation batches ``(inputs (B, C, *S), targets (B,))``.
        important_class: class whose recall is protected; None = the minority class of
            ``val_loader`` (decided on first use).
        max_recall_drop: largest allowed drop, as a fraction (0.01 = one percentage point).
        reference: the reference recall, either a float in [0, 1], an ``nn.Module`` (the
            unpruned model, evaluated once now), or None (methods then call
            :meth:`set_reference` with their unpruned model before pruning).
        metric: per-class metric to protect: a key of the task's ``per_class`` rows
            (classification: ``"recall"``, ``"precision"``, ``"f1"``; segmentation: ``"recall"``,
            ``"precision"``, ``"dice"``, the class's Dice pooled over the pixels of the loader).

    ``check(model)`` returns ``(ok, info)`` with ``info`` holding ``important_class``, ``recall``,
    ``reference_recall``, ``recall_drop``, ``max_recall_drop``, and ``fn`` / ``support`` when the
    task reports them.
    """

    def __init__(
        self,
        task: Any,
        val_loader: Iterable[Any],
        *,
        important_class: int | None = None,
        max_recall_drop: float = 0.01,
        reference: float | nn.Module | None = None,
        metric: str = "recall",
    ) -> None:
        if val_loader is None:
            raise ConfigError("RecallGuard needs a validation loader; got None.")
        if not isinstance(max_recall_drop, (int, float)) or not 0.0 <= max_recall_drop <= 1.0:
            raise ConfigError(
                f"max_recall_drop must be a fraction in [0, 1]; got {max_recall_drop!r}."
            )
        if important_class is not None and (
            not isinstance(important_class, int) or important_class < 0
        ):
            raise ConfigError(
                f"important_class must be an int >= 0 or None; got {important_class!r}."
            )
        self.task = task
        self.val_loader = val_loader
        self.important_class = important_class
        self.max_recall_drop = float(max_recall_drop)
        self.metric = metric
        self.reference_recall: float | None = None
        self.reference_info: dict[str, Any] = {}
        if isinstance(reference, nn.Module):
            self.set_reference(reference)
        elif reference is not None:
            if not isinstance(reference, (int, float)) or not 0.0 <= float(reference) <= 1.0:
                raise ConfigError(
                    f"reference must be a recall in [0, 1], an nn.Module or None; got {reference!r}."
                )
            self.reference_recall = float(reference)

    @property
    def needs_reference(self) -> bool:
        """True until a reference recall is known."""
        return self.reference_recall is None

    def set_reference(self, model: nn.Module) -> float:
        """Evaluate ``model`` (the unpruned one) and use its recall as the reference; returns it."""
        self.reference_info = self.measure(model)
        self.reference_recall = self.reference_info["recall"]
        return self.reference_recall

    def measure(self, model: nn.Module) -> dict[str, Any]:
        """Important-class figures of ``model``: ``recall`` (the chosen metric), ``fn``, ``fp``, ``support``."""
        return self._figures(evaluate(model, self.task, self.val_loader))

    def _figures(self, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.important_class is None:
            self.important_class = minority_class(self.val_loader)
        row = _per_class_row(metrics, self.important_class, self.metric)
        out = {"important_class": self.important_class, "recall": float(row[self.metric])}
        for key in ("fn", "fp", "support"):
            if key in row:
                out[key] = float(row[key])
        if "auc_roc" in metrics:
            out["auc_roc"] = metrics["auc_roc"]
        return out

    def check(self, model: nn.Module) -> tuple[bool, dict[str, Any]]:
        """``(ok, info)``: ok when recall >= reference recall - max_recall_drop (tiny float slack)."""
        return self.verdict(evaluate(model, self.task, self.val_loader))

    def verdict(self, metrics: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """:meth:`check` on metrics already computed by ``task.evaluate`` on ``val_loader``."""
        if self.reference_recall is None:
            raise ConfigError(
                "RecallGuard has no reference recall; pass reference= (a float or the unpruned "
                "model) or call guard.set_reference(unpruned_model) first."
            )
        info = self._figures(metrics)
        drop = self.reference_recall - info["recall"]
        ok = drop <= self.max_recall_drop + 1e-9
        info.update(
            reference_recall=self.reference_recall,
            recall_drop=drop,
            max_recall_drop=self.max_recall_drop,
        )
        if "fn" in self.reference_info:
            info["reference_fn"] = self.reference_info["fn"]
        return ok, info


def _per_class_row(metrics: dict[str, Any], cls: int, metric: str) -> dict[str, Any]:
    per_class = metrics.get("per_class")
    if per_class is None:
        raise ConfigError(
            f"the task's evaluate() reports no 'per_class' metrics (keys: {sorted(metrics)}); "
            "RecallGuard needs per-class recall in the metrics (medprune classification and segmentation tasks provide it; a custom task must return metrics['per_class'][i]['recall'])."
        )
    if isinstance(per_class, dict):
        row = per_class.get(cls, per_class.get(str(cls)))
    else:
        row = per_class[cls] if cls < len(per_class) else None
    if row is None:
        raise ConfigError(
            f"important_class {cls} is not in the task's per-class metrics "
            f"({list(per_class) if isinstance(per_class, dict) else len(per_class)} classes)."
        )
    if metric not in row:
        numeric = sorted(k for k, v in row.items() if isinstance(v, float) or v is None)
        raise ConfigError(
            f"per-class metric {metric!r} is not reported by the task; choose metric= from "
            f"{numeric} (all keys: {sorted(row)})."
        )
    if row[metric] is None:
        raise ConfigError(
            f"class {cls} has no {metric} on the validation loader (no samples of that class?); "
            "choose another important_class or a validation split that contains it."
        )
    return row
