"""The hooks through which pruning methods act inside :func:`medprune.tasks.train`.

Order of calls in one run::

    on_train_start(state)                       # after a resume has restored everything
    for each epoch:                             # state.epoch = 0-based index of this epoch
        for each batch:
            outputs = model(inputs)
            loss = task.loss(outputs, targets) + sum(cb.extra_loss(state, inputs, targets, outputs))
            loss.backward();  after_backward(state)   # e.g. zero the gradients of masked filters
            (gradient clipping);  optimizer.step();  state.step += 1;  after_step(state)
        validation -> state.val_metrics, state.history[-1]
        on_epoch_end(state)                     # may prune state.model physically, in place
        (optimizer/scheduler rebuilt if needed);  scheduler.step();  checkpoint

Callbacks are called in the order given. A callback that prunes in :meth:`TrainCallback.on_epoch_end`
should pass ``state.optimizer`` to the graph engine's ``prune_channels(..., optimizer=...)`` so the
optimizer state is sliced, or set ``state.rebuild_optimizer = True`` to get a fresh optimizer and
scheduler that keep the current learning rate. Never cache parameter lists across epochs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medprune.tasks.recipe import TrainRecipe

__all__ = ["TrainCallback", "TrainState"]


@dataclass
class TrainState:
    """The mutable state a callback sees (and may change).

    Attributes:
        model: the bare model being trained (never the DistributedDataParallel wrapper).
        optimizer: the optimizer over ``model``'s trainable parameters.
        scheduler: the epoch-wise learning-rate scheduler, or None for ``scheduler="none"``.
        epoch: 0-based index of the current epoch (of the one just finished in ``on_epoch_end``).
        step: optimizer steps taken so far in the whole run.
        task: the :class:`~medprune.tasks.base.Task` (loss and metrics).
        val_loader: validation batches, or None.
        history: one dict per finished epoch (``epoch`` (1-based), ``train_loss``, ``lr``,
            ``seconds``, ``steps``, ``val_<metric>`` scalars); callbacks may add keys to
            ``history[-1]`` in ``on_epoch_end``.
        recipe: the :class:`TrainRecipe`.
        device: where the model runs.
        train_loader: the (possibly sharded) training loader.
        seed: the run's seed.
        val_metrics: the full validation dict of the last finished epoch, or None.
        rebuild_optimizer: set True to have the engine rebuild optimizer and scheduler after this
            hook (the current learning rate and the scheduler position are kept).
        stop_training: set True to end training after the current epoch (checkpoint written;
            under ``torchrun`` rank 0's value decides for all ranks).
        extra: free-form scratch space shared by callbacks (not checkpointed).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    epoch: int
    step: int
    task: Any
    val_loader: Iterable[Any] | None
    history: list[dict[str, Any]]
    recipe: TrainRecipe
    device: torch.device
    train_loader: Iterable[Any] | None = None
    seed: int = 0
    val_metrics: dict[str, Any] | None = None
    rebuild_optimizer: bool = False
    stop_training: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])


class TrainCallback:
    """Base class: every hook is a no-op; override the ones you need."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first epoch (after any resume)."""

    def extra_loss(
        self,
        state: TrainState,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        outputs: torch.Tensor,
    ) -> torch.Tensor | None:
        """A scalar added to the task loss of this batch (e.g. a regulariser), or None.

        Args:
            inputs: ``(B, C_in, *S)`` on ``state.device``.
            targets: validated int64 ``(B,)`` or ``(B, *S)``.
            outputs: the model's logits ``(B, C)`` or ``(B, C, *S)`` (part of the autograd graph).
        """
        return None

    def after_backward(self, state: TrainState) -> None:
        """After ``loss.backward()``, before gradient clipping and ``optimizer.step()``."""

    def after_step(self, state: TrainState) -> None:
        """After ``optimizer.step()`` (``state.step`` already incremented)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After validation of epoch ``state.epoch``; may prune ``state.model`` in place."""

    def state_dict(self) -> dict[str, Any]:
        """What to store in the epoch checkpoint to resume this callback (default: nothing).

        Only tensors, numbers, strings, None and lists / tuples / dicts of those.
        """
        return {}

    def load_state_dict(self, state_dict: dict[str, Any], model: nn.Module) -> None:
        """Restore from :meth:`state_dict` on resume, before the model weights are loaded.

        A callback that pruned the model should prune ``model`` again here (e.g. replay its plan)
        so that the checkpoint's smaller weights fit.
        """
