"""``iterative``: ``n_steps`` rounds of score -> prune -> fine-tune along a schedule to the target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from medprune.criteria.base import Criterion
from medprune.errors import ConfigError
from medprune.methods.base import MethodContext, PruneResult, Target, register_method
from medprune.methods.schedules import get_schedule
from medprune.methods.stepwise import as_target, resolve_criterion, run_steps, validate_context


@register_method("iterative")
def iterative(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target | Mapping[str, float],
    criterion: str | Criterion = "l1",
    n_steps: int = 3,
    schedule: str = "linear",
    criterion_kwargs: Mapping[str, Any] | None = None,
    ignore: Sequence[str] = (),
    plan_kwargs: Mapping[str, Any] | None = None,
    max_guard_retries: int = 3,
) -> PruneResult:
    """Reach ``target`` in ``n_steps`` steps; each re-scores the current (already pruned) model.

    The schedule (``"linear"``, ``"geometric"`` or any registered one, see
    :mod:`medprune.methods.schedules`) gives the cumulative fraction of the original MACs /
    parameters / channels removed after each step; every step fine-tunes with ``context.recipe``.

    Args:
        model: the trained model; it is copied, never modified.
        example_inputs: ``(B, C, *S)`` tensor (or tuple) used for tracing and measuring.
        context: see :func:`medprune.methods.oneshot.oneshot`.
        target: ``Target(macs=|params=|ratio=)`` or a mapping.
        criterion: criterion name or instance.
        n_steps: number of score / prune / fine-tune rounds (>= 1).
        schedule: schedule name.
        criterion_kwargs: keyword arguments of the criterion (by name only).
        ignore: module names / patterns never pruned.
        plan_kwargs: extra :func:`~medprune.methods.plan.plan_pruning` options.
        max_guard_retries: back-off attempts per step when the guard rejects it.

    Returns:
        :class:`PruneResult`; ``plan`` holds one step per accepted round.
    """
    t = as_target(target)
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be an integer >= 1; got {n_steps!r}.")
    fractions = get_schedule(schedule)(t.value, n_steps)
    validate_context(context, resolve_criterion(criterion, criterion_kwargs), method="iterative")
    result = run_steps(
        model,
        example_inputs,
        context=context,
        criterion=criterion,
        target=t,
        fractions=fractions,
        method="iterative",
        criterion_kwargs=criterion_kwargs,
        ignore=ignore,
        plan_kwargs=plan_kwargs,
        max_guard_retries=max_guard_retries,
    )
    result.summary.update(schedule=schedule, n_steps=n_steps, fractions=fractions)
    return result
