"""The task abstraction (loss + metrics + primary metric) and the shared evaluation loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

import medprune.tasks.distributed as ddp
from medprune.errors import ConfigError, DataError
from medprune.progress import progress_bar
from medprune.registry import Registry
from medprune.tasks.loaders import shard_for_evaluation
from medprune.tasks.losses import check_targets
from medprune.tasks.targets import class_logits

__all__ = ["TASKS", "Task", "create_task", "evaluate", "split_batch"]

TASKS: Registry[type[Task]] = Registry("task")


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` from a batch: a 2-tuple / list, or a dict with image / label keys."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        for x_key, y_key in (("image", "label"), ("inputs", "targets"), ("image", "mask")):
            if x_key in batch and y_key in batch:
                return batch[x_key], batch[y_key]
    kind = f"dict with keys {sorted(batch)}" if isinstance(batch, dict) else type(batch).__name__
    raise DataError(
        f"a batch must be an (inputs, targets) pair or a dict with 'image' and 'label'; got a {kind}."
    )


class Task(ABC):
    """Loss, prediction and metrics of one kind of problem.

    Args:
        num_classes: ``C`` (>= 2; binary problems have 2 classes and 2 logits, or one sigmoid
            foreground logit: a ``(B, 1, *S)`` output is read as the 2-class logits ``(0, z)``,
            see :meth:`logits`, so the losses and metrics are the sigmoid / BCE ones).

    Attributes:
        kind: ``"classification"`` or ``"segmentation"``.
        primary_metric: the key of :meth:`evaluate`'s dict used for model selection and guards
            (higher is better).
        loss_fn: the underlying ``nn.Module`` ``(outputs, targets) -> scalar``.
    """

    kind: ClassVar[str]
    primary_metric: ClassVar[str]
    loss_fn: nn.Module

    def __init__(self, num_classes: int) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ConfigError(
                f"num_classes must be an integer >= 2 (binary problems use 2 classes); got "
                f"{num_classes!r}."
            )
        self.num_classes = num_classes

    def check_targets(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Validated int64 targets (see :func:`medprune.tasks.losses.check_targets`)."""
        return check_targets(outputs, targets, self.num_classes)

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """One logit per class ``(B, C, *S)``: a single foreground logit ``z`` ``(B, 1, *S)``
        becomes ``(0, z)`` (softmax = ``(1 - sigmoid(z), sigmoid(z))``), others are unchanged."""
        return class_logits(outputs) if self.num_classes == 2 else outputs

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss of logits ``outputs`` against class-index ``targets`` (validated first)."""
        targets = self.check_targets(outputs, targets)
        return self.loss_fn(self.logits(outputs), targets)

    def predict_proba(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities: softmax over dim 1 of ``(B, C)`` / ``(B, C, *S)`` logits."""
        return torch.softmax(self.logits(outputs).float(), dim=1)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class indices: argmax over dim 1, ``(B,)`` / ``(B, *S)`` int64."""
        return self.logits(outputs).argmax(dim=1)

    @abstractmethod
    def new_meter(self) -> Any:
        """A fresh metric accumulator (``merge(other)``, ``compute() -> dict``), fed by
        :meth:`update_meter`."""

    @abstractmethod
    def update_meter(self, meter: Any, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Feed one batch of logits and validated targets into ``meter``."""

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (for run records)."""
        return {"kind": self.kind, "num_classes": self.num_classes}

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable[Any],
        *,
        device: str | torch.device = "cpu",
        progress: bool = False,
    ) -> dict[str, Any]:
        """Metrics of ``model`` on ``loader`` (see :func:`evaluate`)."""
        return evaluate(model, self, loader, device=device, progress=progress)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "kind")
        return f"{type(self).__name__}({args})"


def evaluate(
    model: nn.Module,
    task: Task,
    loader: Iterable[Any],
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on every batch of ``loader`` in eval mode, without gradients.

    Under ``torchrun`` a DataLoader is split into disjoint per-rank shards and the per-rank results
    are gathered, so every rank returns the same dict for the whole set.

    Args:
        model: returns logits ``(B, C)`` or ``(B, C, *S)`` for inputs ``(B, C_in, *S)``.
        task: a :class:`Task`.
        loader: yields ``(inputs, targets)`` batches.
        device: where the model runs (the model is moved there).
        progress: show progress (:func:`medprune.progress.progress_bar`: rank 0 only).

    Returns:
        The task's metrics (see :func:`~medprune.tasks.metrics.classification_metrics` and
        :class:`~medprune.tasks.metrics.SegmentationMeter`) plus ``loss`` (mean per sample).

    Raises:
        DataError: the loader yielded no batch, or bad targets.
        ShapeMismatchError: outputs or targets of the wrong shape.
    """
    device = torch.device(device)
    sharded = shard_for_evaluation(loader)
    if sharded is not None:
        loader = sharded
    model.to(device)
    was_training = model.training
    model.eval()
    meter = task.new_meter()
    loss_sum, count = 0.0, 0
    bar = progress_bar(loader, desc="evaluate", unit="batches", leave=False, enabled=progress)
    try:
        with torch.no_grad():
            for batch in bar:
                inputs, targets = split_batch(batch)
                inputs, targets = inputs.to(device), targets.to(device)
                outputs = model(inputs)
                targets = task.check_targets(outputs, targets)
                loss_sum += float(task.loss_fn(task.logits(outputs), targets)) * inputs.shape[0]
                count += inputs.shape[0]
                task.update_meter(meter, outputs, targets)
    finally:
        bar.close()
        model.train(was_training)
    if sharded is not None:
        parts = ddp.all_gather_objects((meter, loss_sum, count))
        meter = parts[0][0]
        for other, _, _ in parts[1:]:
            meter.merge(other)
        loss_sum, count = sum(p[1] for p in parts), sum(p[2] for p in parts)
    if count == 0:
        raise DataError("evaluate got no batches: the loader is empty.")
    metrics = meter.compute()
    metrics["loss"] = loss_sum / count
    return metrics


def create_task(kind: str, **kwargs: Any) -> Task:
    """Build a task by name: ``"classification"`` or ``"segmentation"``; ``kwargs`` go to its
    constructor (``num_classes`` is required)."""
    import medprune.tasks.classification  # noqa: F401  (registers the built-in tasks)
    import medprune.tasks.segmentation  # noqa: F401

    cls = TASKS.get(kind)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"invalid arguments for task {kind!r}: {e}") from e
