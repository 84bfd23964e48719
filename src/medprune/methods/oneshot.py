"""``oneshot``: score once, remove the channels, fine-tune (the HRankPlus / β-Rank schedule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from medprune.criteria.base import Criterion
from medprune.methods.base import MethodContext, PruneResult, Target, register_method
from medprune.methods.stepwise import as_target, run_steps


@register_method("oneshot")
def oneshot(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target | Mapping[str, float],
    criterion: str | Criterion = "l1",
    criterion_kwargs: Mapping[str, Any] | None = None,
    ignore: Sequence[str] = (),
    plan_kwargs: Mapping[str, Any] | None = None,
    max_guard_retries: int = 3,
) -> PruneResult:
    """Score all groups, plan to ``target``, prune physically, fine-tune with ``context.recipe``.

    Args:
        model: the trained model; it is copied, never modified.
        example_inputs: ``(B, C, *S)`` tensor (or tuple) used for tracing and measuring.
        context: task, loaders, calibration batches, recipe (``epochs=0``: no fine-tuning), guard.
        target: ``Target(macs=|params=|ratio=)`` or a mapping such as ``{"macs": 0.5}``.
        criterion: criterion name (see :func:`medprune.list_criteria`) or instance.
        criterion_kwargs: keyword arguments of the criterion (by name only).
        ignore: module names / patterns never pruned (also passed to the engine).
        plan_kwargs: extra :func:`~medprune.methods.plan.plan_pruning` options (``scope``,
            ``min_channels``, ``round_to``, ``max_per_layer``, ``per_layer``).
        max_guard_retries: back-off attempts when ``context.guard`` rejects the result.

    Returns:
        :class:`PruneResult` with the pruned model, the one-step plan, the before/after summary
        and the history (one record per attempt).
    """
    t = as_target(target)
    return run_steps(
        model,
        example_inputs,
        context=context,
        criterion=criterion,
        target=t,
        fractions=[t.value],
        method="oneshot",
        criterion_kwargs=criterion_kwargs,
        ignore=ignore,
        plan_kwargs=plan_kwargs,
        max_guard_retries=max_guard_retries,
    )
