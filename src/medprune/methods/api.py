"""``medprune.prune``: the one-call Python entry point (one-shot or iterative criteria pruning)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.criteria.base import Criterion
from medprune.errors import ConfigError
from medprune.measure._inputs import check_device
from medprune.methods.base import Guard, MethodContext, PruneResult, Target
from medprune.methods.iterative import iterative
from medprune.methods.oneshot import oneshot
from medprune.methods.stepwise import resolve_criterion, validate_context
from medprune.tasks.recipe import TrainRecipe


def prune(
    model: nn.Module,
    example_inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    criterion: str | Criterion = "l1",
    target_macs: float | None = None,
    target_params: float | None = None,
    ratio: float | None = None,
    target_latency: float | None = None,
    latency_runtime: str | Any = "torch",
    latency_device: str | None = None,
    latency_options: Mapping[str, Any] | None = None,
    calibration: Iterable[Any] | None = None,
    task: Any = None,
    fine_tune: TrainRecipe | None = None,
    train_loader: Iterable[Any] | None = None,
    iterative_steps: int = 1,
    schedule: str = "linear",
    criterion_kwargs: Mapping[str, Any] | None = None,
    ignore: Sequence[str] = (),
    plan_kwargs: Mapping[str, Any] | None = None,
    guard: Guard | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
) -> PruneResult:
    """Prune ``model`` to a budget with one criterion, optionally fine-tuning after each step.

    ``result = medprune.prune(model, x, criterion="beta_rank", target_macs=0.5,
    calibration=loader)``: ``result.model`` is the smaller ``nn.Module`` (the input model is not
    modified), ``result.plan`` the replayable :class:`medprune.graph.PruningPlan`,
    ``result.summary`` the MACs / parameters before and after.

    Args:
        model: the trained model.
        example_inputs: ``(B, C, *S)`` input (or tuple of inputs) for tracing and measuring.
        criterion: criterion name (:func:`medprune.list_criteria`) or instance.
        target_macs: fraction of MACs to remove, in ``[0, 1)``.
        target_params: fraction of parameters to remove.
        ratio: fraction of channels to remove (global ranking unless ``plan_kwargs`` says
            otherwise).
        target_latency: fraction of the *measured* latency to remove, in ``(0, 1)``
            (:mod:`medprune.latency`). Exactly one of the four targets is required.
        latency_runtime: ``"torch"`` or ``"onnxruntime"`` (CPU only), for ``target_latency``
            (or a :class:`medprune.latency.Runtime` instance).
        latency_device: device the latency is measured on; None = ``device`` (``"cpu"`` for
            ``onnxruntime``).
        latency_options: further :class:`medprune.latency.LatencyOptions` fields (``threads``,
            ``cache_dir``, ``tolerance``, ``calibrate``, ``repeats``, ...).
        calibration: batches ``(inputs, targets)`` (or ``{"image", "label"}`` dicts) for
            data-driven criteria; targets in any form of :mod:`medprune.tasks.targets`.
        task: what drives gradient criteria (``taylor``, ``taylor_gn``): a :mod:`medprune.tasks`
            task (its loss; also needed for fine-tuning), or a plain loss callable
            ``loss(outputs, targets) -> scalar`` (an ``nn.Module`` loss such as
            ``monai.losses.DiceLoss(sigmoid=True)``, or a function), called with the loader's
            targets unchanged. None = cross-entropy on ``(B, C, *S)`` logits, BCE-with-logits
            for a single-channel (sigmoid) output ``(B, 1, *S)`` with labels in ``{0, 1}``.
        fine_tune: recipe applied after each pruning step; None = no fine-tuning.
        train_loader: batches for fine-tuning (required with ``fine_tune``).
        iterative_steps: 1 = one-shot; more = iterative along ``schedule``.
        schedule: ``"linear"`` or ``"geometric"`` (iterative only).
        criterion_kwargs: keyword arguments of the criterion.
        ignore: module names / patterns never pruned.
        plan_kwargs: :func:`~medprune.methods.plan.plan_pruning` options (``scope``,
            ``min_channels``, ``round_to``, ``max_per_layer``, ``per_layer``).
        guard: optional acceptance check (e.g. :class:`medprune.methods.guard.RecallGuard`).
        seed: seed for fine-tuning.
        device: torch device.
        progress: progress bars.
        checkpoint_dir: folder where every fine-tuning checkpoints each epoch; calling again with
            the same folder skips finished fine-tunings and resumes an interrupted one (see
            :class:`~medprune.methods.base.MethodContext`).

    Raises:
        ConfigError: any invalid argument (a ``task`` that is neither a task nor callable), before
            anything expensive runs.
        DataError: calibration labels outside the model's classes (a 0/255 mask), named with the
            value and the fix.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    if not isinstance(example_inputs, torch.Tensor) and not (
        isinstance(example_inputs, tuple) and all(torch.is_tensor(x) for x in example_inputs)
    ):
        raise ConfigError(
            "example_inputs must be a tensor (B, C, *S) or a tuple of tensors; got "
            f"{type(example_inputs).__name__}."
        )
    given = {
        k: v
        for k, v in (
            ("macs", target_macs),
            ("params", target_params),
            ("ratio", ratio),
            ("latency", target_latency),
        )
        if v is not None
    }
    if len(given) != 1:
        raise ConfigError(
            "prune() needs exactly one of target_macs=, target_params=, ratio=, "
            f"target_latency=; got {given or 'none'}."
        )
    target = Target(**given)
    device = check_device(device)
    plan_kwargs = dict(plan_kwargs or {})
    if target.kind == "latency":
        plan_kwargs["latency"] = _latency_options(
            latency_runtime, latency_device, latency_options, device, progress
        )
    elif latency_options:
        raise ConfigError(
            f"latency_options={dict(latency_options)!r} apply to target_latency= only; drop them "
            "or give target_latency=."
        )
    if fine_tune is not None and not isinstance(fine_tune, TrainRecipe):
        raise ConfigError(
            f"fine_tune must be a TrainRecipe or None; got {type(fine_tune).__name__}."
        )
    if not isinstance(iterative_steps, int) or iterative_steps < 1:
        raise ConfigError(f"iterative_steps must be an integer >= 1; got {iterative_steps!r}.")
    kwargs = dict(criterion_kwargs or {})
    crit = resolve_criterion(criterion, kwargs)
    if isinstance(criterion, str) and crit.needs_data and "progress" not in kwargs:
        crit.progress = progress  # type: ignore[attr-defined]
    context = MethodContext(
        task=task,
        train_loader=train_loader,
        calibration=calibration,
        recipe=fine_tune if fine_tune is not None else TrainRecipe(epochs=0),
        seed=seed,
        device=device,
        guard=guard,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
    )
    validate_context(context, crit, method="prune")
    common: dict[str, Any] = {
        "context": context,
        "target": target,
        "criterion": crit,
        "ignore": tuple(ignore),
        "plan_kwargs": plan_kwargs,
    }
    if iterative_steps == 1:
        return oneshot(model, example_inputs, **common)
    return iterative(model, example_inputs, n_steps=iterative_steps, schedule=schedule, **common)


def _latency_options(
    runtime: Any,
    device: str | None,
    options: Mapping[str, Any] | None,
    run_device: torch.device,
    progress: bool,
) -> Any:
    """:class:`~medprune.latency.LatencyOptions` of ``prune(target_latency=...)``."""
    from medprune.latency import LatencyOptions

    return LatencyOptions.with_extra(
        options,
        source="latency_options",
        runtime=runtime,
        device=default_latency_device(runtime, device, run_device),
        runtime_from="latency_runtime=",
        device_from="latency_device=",
        progress=progress,
    )


def default_latency_device(
    runtime: Any, latency_device: str | None, device: torch.device | str
) -> str:
    """The device a latency target is measured on: ``latency_device``, else the run's ``device``
    (always ``"cpu"`` for ``onnxruntime``, which only measures its CPU execution provider)."""
    if latency_device == "auto":  # like the run's device: CUDA when present (torch only)
        return "cpu" if runtime == "onnxruntime" else str(check_device("auto"))
    if latency_device is not None:
        return str(latency_device)
    return "cpu" if runtime == "onnxruntime" else str(device)
