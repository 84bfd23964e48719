"""Shared plumbing of the training-time methods (soft, MFP, Sauron, lottery).

Wraps :func:`medprune.tasks.train` and ``task.evaluate``, counts MACs / parameters, and builds the
before/after summary every :class:`~medprune.methods.base.PruneResult` carries. Callbacks of the
methods derive from :class:`medprune.tasks.TrainCallback` (``CallbackBase``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.methods._phases import PhaseStamp, phase_path, resume_phase, weights_digest
from medprune.methods.base import MethodContext, Target
from medprune.tasks.callbacks import TrainCallback
from medprune.tasks.recipe import TrainRecipe

CallbackBase = TrainCallback


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return (
        model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    )


def require(context: MethodContext, *names: str, method: str) -> None:
    """Raise :class:`ConfigError` when a context field the method needs is missing."""
    for name in names:
        if getattr(context, name) is None:
            raise ConfigError(
                f"method {method!r} needs context.{name}, which is None; pass it in MethodContext"
                f"({name}=...)."
            )


def as_target(target: Any, *, method: str) -> Target:
    """``target`` as a :class:`Target` (an instance or a ``{"macs": 0.5}`` mapping)."""
    if isinstance(target, Target):
        return target
    if isinstance(target, dict):
        try:
            return Target(**target)
        except TypeError:
            pass
    raise ConfigError(
        f"method {method!r} needs target=Target(macs=|params=|ratio=) or a mapping like "
        f"{{'macs': 0.5}}; got {target!r}."
    )


def fit(
    model: nn.Module,
    context: MethodContext,
    *,
    callbacks: Sequence[Any] = (),
    recipe: TrainRecipe | None = None,
    task: Any = None,
    val_loader: Iterable[Any] | None = None,
    phase: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place with :func:`medprune.tasks.train`; returns its per-epoch history.

    Args:
        model: the model to train (its current weights are the phase's starting point).
        context: task, loaders, recipe, seed, device and ``checkpoint_dir``.
        callbacks: the method's :class:`~medprune.tasks.TrainCallback` objects.
        recipe: overrides ``context.recipe``.
        task: overrides ``context.task`` (e.g. a class-weighted copy).
        val_loader: validation batches passed to ``train``.
        phase: name of this training phase, unique within the method run (``"sauron"``,
            ``"finetune_step1_attempt0"``). With ``context.checkpoint_dir`` set, the phase is
            checkpointed to ``<checkpoint_dir>/<phase>.pt`` every epoch and resumed from it (see
            :mod:`medprune.methods._phases`); None = never checkpointed.
        options: the method settings that change what this phase computes (target, criterion,
            schedule...), part of the fingerprint that refuses a checkpoint of another run.
    """
    from medprune.tasks import train

    recipe = recipe if recipe is not None else context.recipe
    if recipe.epochs == 0:
        return []
    task = task if task is not None else context.task
    callbacks = list(callbacks)
    path, resume = None, False
    if context.checkpoint_dir is not None and phase is not None:
        path = phase_path(context.checkpoint_dir, phase)
        config = {
            "phase": phase,
            "options": options or {},
            "recipe": recipe,
            "seed": context.seed,
            "task": task.config() if hasattr(task, "config") else task,
        }
        stamp = PhaseStamp(phase, config, weights_digest(model))
        resume = resume_phase(path, stamp)
        callbacks = [stamp, *callbacks]
    result = train(
        model,
        task,
        context.train_loader,
        recipe,
        val_loader=val_loader,
        callbacks=callbacks,
        checkpoint_path=path,
        resume=resume,
        seed=context.seed,
        device=context.device,
        progress=context.progress,
    )
    return list(getattr(result, "history", []) or [])


def evaluate(model: nn.Module, task: Any, loader: Iterable[Any]) -> dict[str, Any]:
    """``task.evaluate`` on the device the model's parameters live on (train/eval mode restored)."""
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    try:
        return dict(task.evaluate(model, loader, device=device))
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    """Number of parameter elements."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """Multiply-accumulates of one forward pass on ``example_inputs`` (``medprune.measure`` if present)."""
    try:
        from medprune.measure import count_macs as _count  # type: ignore[attr-defined]
    except ImportError:
        _count = None
    if _count is not None:
        return int(_count(model, example_inputs))
    from torch.utils.flop_counter import FlopCounterMode

    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def cost(model: nn.Module, example_inputs: Any) -> tuple[int, int]:
    """``(macs, params)`` of ``model`` on ``example_inputs``."""
    return count_macs(model, example_inputs), count_params(model)


def summary(before: tuple[int, int], after: tuple[int, int], **extra: Any) -> dict[str, Any]:
    """The before/after figures of :class:`~medprune.methods.base.PruneResult`."""
    macs_b, params_b = before
    macs_a, params_a = after
    return {
        "macs_before": macs_b,
        "macs_after": macs_a,
        "params_before": params_b,
        "params_after": params_a,
        "macs_removed": 1.0 - macs_a / macs_b if macs_b else 0.0,
        "params_removed": 1.0 - params_a / params_b if params_b else 0.0,
        **extra,
    }


def working_copy(model: nn.Module, device: torch.device | str) -> nn.Module:
    """A deep copy of ``model`` on ``device``: methods never modify the caller's model."""
    return copy.deepcopy(model).to(device)


def to_device(example_inputs: Any, device: torch.device | str) -> Any:
    """``example_inputs`` (a tensor or tuple of tensors) moved to ``device``."""
    if isinstance(example_inputs, tuple):
        return tuple(x.to(device) if torch.is_tensor(x) else x for x in example_inputs)
    return example_inputs.to(device)


def forward(model: nn.Module, example_inputs: Any) -> torch.Tensor:
    """Eval-mode, no-grad output of ``model`` on ``example_inputs`` (train mode restored)."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(*inputs)
    finally:
        model.train(was_training)


def check_guard(
    context: MethodContext, model: nn.Module, *, method: str, step: Any = "final"
) -> dict[str, Any] | None:
    """Run ``context.guard`` (if any) on ``model``; emit and return its verdict."""
    if context.guard is None:
        return None
    ok, info = context.guard.check(model)
    verdict = {"event": "guard", "method": method, "step": step, "ok": bool(ok), **info}
    context.emit(verdict)
    if not ok:
        import logging

        logging.getLogger(__name__).warning(
            "%s: the guard rejected the pruned model at step %s: %s", method, step, info
        )
    return verdict


def set_guard_reference(context: MethodContext, model: nn.Module) -> None:
    """Give a :class:`~medprune.methods.guard.RecallGuard` without a reference the unpruned model."""
    guard = context.guard
    if guard is not None and getattr(guard, "needs_reference", False):
        guard.set_reference(model)
