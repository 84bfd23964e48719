"""The training loop shared by baseline training and every pruning method.

Deterministic on CPU: the run is seeded, shuffling depends only on ``(seed, epoch)`` (see
:mod:`medprune.tasks.loaders`), and the epoch checkpoint holds model, optimizer, scheduler, history,
callback states and every RNG state, so a run resumed from the checkpoint of epoch ``k``
reproduces the uninterrupted run's weights bit for bit. The checkpoint also stores the recipe,
seed and task, and resuming under other ones is refused (see ``resume`` in :func:`train`).
Under ``torchrun`` the same call trains with DistributedDataParallel (see
:mod:`medprune.tasks.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import medprune.tasks.distributed as ddp
from medprune.errors import CheckpointError, ConfigError, DataError
from medprune.progress import progress_bar
from medprune.tasks.base import Task, evaluate, split_batch
from medprune.tasks.callbacks import TrainCallback, TrainState
from medprune.tasks.checkpoint import (
    capture_rng_state,
    check_resume,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from medprune.tasks.loaders import distribute_loader
from medprune.tasks.optim import (
    build_optimizer,
    build_scheduler,
    optimizer_out_of_sync,
    rebuild_optimizer,
)
from medprune.tasks.recipe import TrainRecipe
from medprune.typing import PathLike

__all__ = ["CHECKPOINT_FORMAT", "TrainResult", "train"]

logger = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "medprune.train/1"
_REQUIRED = ("format", "epoch", "step", "model", "optimizer", "scheduler", "history", "rng")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        history: one dict per epoch (including epochs restored from a checkpoint).
        model: the trained (possibly pruned) bare model.
        val_metrics: full validation metrics of the last epoch, or None.
        epochs_completed: epochs finished in total.
        resumed_from_epoch: epochs restored from the checkpoint (0 for a fresh run).
        seconds: wall time of this call.
        primary_metric: the task's primary metric name (history key ``val_<name>``).
    """

    history: list[dict[str, Any]]
    model: nn.Module
    val_metrics: dict[str, Any] | None
    epochs_completed: int
    resumed_from_epoch: int
    seconds: float
    primary_metric: str


def _plain(obj: Any) -> Any:
    """``obj`` with NumPy / tensor scalars turned into Python numbers (for weights-only loading)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.generic, torch.Tensor)) and np.ndim(obj) == 0:
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    text = str(obj)
    if " at 0x" in text:  # a default repr: its memory address differs in every process
        return f"<{type(obj).__module__}.{type(obj).__qualname__}>"
    return text


def _signature(model: nn.Module) -> tuple[Any, ...]:
    return (id(model), *((id(p), tuple(p.shape)) for p in model.parameters()))


def _wrap(model: nn.Module, device: torch.device, recipe: TrainRecipe) -> nn.Module:
    """DistributedDataParallel around ``model`` under ``torchrun``; ``model`` itself otherwise."""
    if not ddp.is_distributed():
        return model
    find_unused = bool(recipe.extra.get("find_unused_parameters", False))
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused)


def _sync(
    state: TrainState, net: nn.Module, before: tuple[Any, ...], model: nn.Module
) -> nn.Module:
    """After a hook that may have pruned or replaced the model: fix optimizer and DDP wrapper."""
    if state.model is not model:
        state.model.to(state.device)
    reason = optimizer_out_of_sync(state.optimizer, state.model)
    if reason is not None and not state.rebuild_optimizer:
        logger.warning(
            "the optimizer no longer matches the model (%s); rebuilding it, so momentum / Adam "
            "moments restart. Pass optimizer=state.optimizer to prune_channels to keep them.",
            reason,
        )
    if state.rebuild_optimizer or reason is not None:
        state.optimizer, state.scheduler = rebuild_optimizer(
            state.recipe, state.model, state.optimizer, state.scheduler
        )
        state.rebuild_optimizer = False
    if _signature(state.model) != before:  # pruned or replaced: DDP must see the new parameters
        return _wrap(state.model, state.device, state.recipe)
    return net


def _set_epoch(loader: Any, epoch: int) -> None:
    seen = []
    for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch") and not any(sampler is s for s in seen):
            sampler.set_epoch(epoch)
            seen.append(sampler)


def _train_epoch(
    state: TrainState, net: nn.Module, callbacks: Sequence[TrainCallback], progress: bool
) -> dict[str, Any]:
    """One pass over the training loader; returns the epoch's history record (without val)."""
    recipe, loader = state.recipe, state.train_loader
    assert loader is not None
    _set_epoch(loader, state.epoch)
    state.model.train()
    lr = state.lr
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    if recipe.max_steps_per_epoch is not None:
        total = min(total or recipe.max_steps_per_epoch, recipe.max_steps_per_epoch)
    loss_sum, n_steps = 0.0, 0
    desc = f"train epoch {state.epoch + 1}/{recipe.epochs}"
    with progress_bar(total=total, desc=desc, unit="batches", enabled=progress) as bar:
        for batch in loader:
            if recipe.max_steps_per_epoch is not None and n_steps >= recipe.max_steps_per_epoch:
                break
            inputs, targets = split_batch(batch)
            inputs, targets = inputs.to(state.device), targets.to(state.device)
            state.optimizer.zero_grad(set_to_none=True)
            outputs = net(inputs)
            targets = state.task.check_targets(outputs, targets)
            logits = state.task.logits(outputs) if hasattr(state.task, "logits") else outputs
            loss = state.task.loss_fn(logits, targets)
            for cb in callbacks:
                extra = cb.extra_loss(state, inputs, targets, outputs)
                if extra is not None:
                    loss = loss + extra
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ConfigError(
                    f"the training loss became {value} at epoch {state.epoch + 1}, step "
                    f"{state.step + 1} (lr={lr}). Lower the learning rate or set grad_clip."
                )
            loss.backward()
            for cb in callbacks:
                cb.after_backward(state)
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(state.model.parameters(), recipe.grad_clip)
            state.optimizer.step()
            state.step += 1
            for cb in callbacks:
                cb.after_step(state)
            loss_sum += value
            n_steps += 1
            bar.set_postfix(loss=f"{value:.4f}")  # before update: a log line shows this step
            bar.update(1)
    if n_steps == 0:
        raise DataError("the training loader yielded no batch; check the dataset and batch size.")
    ddp.sync_buffers(state.model)
    mean = ddp.all_reduce_mean(torch.tensor(loss_sum / n_steps, dtype=torch.float64))
    return {"epoch": state.epoch + 1, "train_loss": float(mean), "lr": lr, "steps": n_steps}


def _validate(state: TrainState, record: dict[str, Any]) -> None:
    if state.val_loader is None:
        return
    metrics = evaluate(state.model, state.task, state.val_loader, device=state.device)
    state.val_metrics = metrics
    for key, value in metrics.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            record[f"val_{key}"] = value


def _checkpoint_payload(
    state: TrainState, callbacks: Sequence[TrainCallback], epochs_done: int
) -> dict[str, Any]:
    recipe = _plain(dataclasses.asdict(state.recipe))
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epochs_done,
        "step": state.step,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": None if state.scheduler is None else state.scheduler.state_dict(),
        "history": _plain(state.history),
        "rng": capture_rng_state(),
        "seed": state.seed,
        "recipe": recipe,
        "task": _plain(state.task.config()),
        "callbacks": [cb.state_dict() for cb in callbacks],
        "world_size": ddp.world_size(),
    }


def _restore(
    path: Path,
    model: nn.Module,
    callbacks: Sequence[TrainCallback],
    *,
    recipe: TrainRecipe,
    task: Task,
    seed: int,
) -> dict[str, Any]:
    ckpt = load_checkpoint(path, required_keys=_REQUIRED)
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {ckpt['format']!r}; expected {CHECKPOINT_FORMAT!r} "
            "(a training checkpoint written by medprune.tasks.train)."
        )
    recipe_data = _plain(dataclasses.asdict(recipe))
    check_resume(
        path,
        ckpt,
        recipe=recipe_data,
        seed=seed,
        task=_plain(task.config()),
        world_size=ddp.world_size(),
    )
    saved_cbs = ckpt.get("callbacks") or []
    if len(saved_cbs) != len(callbacks):
        logger.warning(
            "checkpoint %s was written with %d callbacks, resuming with %d; their states are "
            "matched by position",
            path,
            len(saved_cbs),
            len(callbacks),
        )
    for cb, cb_state in zip(callbacks, saved_cbs, strict=False):
        cb.load_state_dict(cb_state, model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: {str(e).splitlines()[0]} "
            "(was the model built with the same architecture, and pruned the same way?)"
        ) from e
    return ckpt


def train(
    model: nn.Module,
    task: Task,
    train_loader: Iterable[Any],
    recipe: TrainRecipe,
    *,
    val_loader: Iterable[Any] | None = None,
    callbacks: Sequence[TrainCallback] = (),
    checkpoint_path: PathLike | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place for ``recipe.epochs`` epochs.

    Args:
        model: maps inputs ``(B, C_in, *S)`` to logits ``(B, C)`` / ``(B, C, *S)``.
        task: a :class:`~medprune.tasks.base.Task` (loss, metrics, primary metric).
        train_loader: yields ``(inputs, targets)`` batches; use :func:`make_loader` for
            ``(seed, epoch)``-determined shuffling (``set_epoch`` is called on its sampler).
        recipe: optimizer, learning rate, scheduler, epochs, step cap, gradient clipping.
        val_loader: evaluated after every epoch (``val_<metric>`` in the history).
        callbacks: :class:`TrainCallback` objects, called in order.
        checkpoint_path: written atomically after every epoch (rank 0 only).
        resume: continue from ``checkpoint_path``. The checkpoint must come from the same
            recipe, seed and task: another learning rate, optimizer, scheduler, seed, loss...
            raises :class:`CheckpointError` listing each change (``old -> new``). ``epochs`` may
            change when the scheduler is ``"none"`` or ``"step"`` (raise it to train longer: the
            result equals a run made with the new ``epochs`` from the start), never below the
            finished epochs, and not at all with ``"cosine"`` (the finished epochs followed the
            old annealing). See :func:`~medprune.tasks.checkpoint.check_resume`. A checkpoint
            written before medprune stored its recipe loads with a logged warning.
        seed: seeds Python, NumPy and PyTorch at the start.
        device: ``"cpu"``, ``"cuda"``...; under ``torchrun`` with CUDA each rank uses
            ``cuda:$LOCAL_RANK``. Under ``torchrun`` the process group is initialised here and
            left open for later calls; end the script with ``cleanup_distributed()``.
        progress: progress per epoch showing the loss (rank 0 only; a bar on a terminal, log
            lines otherwise: :func:`medprune.progress.progress_bar`).

    Raises:
        ConfigError: invalid arguments, or the loss became NaN / inf.
        CheckpointError: ``resume=True`` and the checkpoint is missing, corrupt, does not fit
            the model, or was written with another recipe, seed or task.
        DataError, ShapeMismatchError: bad batches.
        KeyboardInterrupt: re-raised after logging; the last finished epoch is on disk.
    """
    if not isinstance(recipe, TrainRecipe):
        raise ConfigError(f"recipe must be a TrainRecipe; got {type(recipe).__name__}.")
    if not isinstance(task, Task):
        raise ConfigError(f"task must be a medprune Task; got {type(task).__name__}.")
    if resume and checkpoint_path is None:
        raise ConfigError("resume=True needs checkpoint_path= (the checkpoint to continue from).")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, TrainCallback):
            raise ConfigError(f"callbacks must subclass TrainCallback; got {type(cb).__name__}.")
    started = time.perf_counter()
    device = ddp.init_distributed(device)
    seed_everything(seed)
    train_loader = distribute_loader(train_loader, seed=seed)
    path = None if checkpoint_path is None else Path(checkpoint_path)
    ckpt = None
    if resume and path is not None:
        ckpt = _restore(path, model, callbacks, recipe=recipe, task=task, seed=seed)
    model.to(device)
    optimizer = build_optimizer(recipe, model)
    scheduler = build_scheduler(recipe, optimizer)
    state = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=0,
        step=0,
        task=task,
        val_loader=val_loader,
        history=[],
        recipe=recipe,
        device=device,
        train_loader=train_loader,
        seed=seed,
    )
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        state.epoch, state.step, state.history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
        restore_rng_state(ckpt["rng"])
    start_epoch = state.epoch
    net = _wrap(model, device, recipe)
    before = _signature(state.model)
    for cb in callbacks:
        cb.on_train_start(state)
    net = _sync(state, net, before, model)
    try:
        for epoch in range(start_epoch, recipe.epochs):
            state.epoch, epoch_start = epoch, time.perf_counter()
            record = _train_epoch(state, net, callbacks, progress)
            _validate(state, record)
            record["seconds"] = time.perf_counter() - epoch_start
            state.history.append(record)
            current, before = state.model, _signature(state.model)
            for cb in callbacks:
                cb.on_epoch_end(state)
            net = _sync(state, net, before, current)
            if state.scheduler is not None:
                with warnings.catch_warnings():  # a just-rebuilt optimizer has not stepped yet
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                    state.scheduler.step()
            if path is not None:
                if ddp.is_main_process():
                    save_checkpoint(path, _checkpoint_payload(state, callbacks, epoch + 1))
                ddp.barrier()
            if ddp.broadcast_object(state.stop_training):
                break
    except KeyboardInterrupt:
        done = len(state.history)
        where = f"; the checkpoint of epoch {done} is {path}" if path and done else ""
        logger.warning("training interrupted during epoch %d%s", state.epoch + 1, where)
        raise
    return TrainResult(
        history=state.history,
        model=state.model,
        val_metrics=state.val_metrics,
        epochs_completed=len(state.history),
        resumed_from_epoch=start_epoch,
        seconds=time.perf_counter() - started,
        primary_metric=task.primary_metric,
    )
