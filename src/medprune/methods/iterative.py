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

#: Molchanov et al. (2019): Taylor scores are averaged across pruning steps with this coefficient.
TAYLOR_SCORE_EMA = 0.9


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
    score_ema: float | str | None = "auto",
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
        score_ema: exponential moving average of the scores across steps, on the surviving
            channels (``0.9 * previous + 0.1 * new``). ``"auto"`` (default) uses 0.9 for the
            Taylor criteria, as Molchanov et al. (2019) do, and None (each step's own scores) for
            the others; a float in [0, 1) or None sets it for any criterion.

    Returns:
        :class:`PruneResult`; ``plan`` holds one step per accepted round.
    """
    t = as_target(target)
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be an integer >= 1; got {n_steps!r}.")
    fractions = get_schedule(schedule)(t.value, n_steps)
    crit = resolve_criterion(criterion, criterion_kwargs)
    validate_context(context, crit, method="iterative")
    if score_ema == "auto":
        score_ema = TAYLOR_SCORE_EMA if crit.name.startswith("taylor") else None
    elif isinstance(score_ema, str):
        raise ConfigError(
            f"score_ema must be 'auto', a float in [0, 1) or None; got {score_ema!r}."
        )
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
        score_ema=score_ema,
    )
    result.summary.update(
        schedule=schedule, n_steps=n_steps, fractions=fractions, score_ema=score_ema
    )
    return result
