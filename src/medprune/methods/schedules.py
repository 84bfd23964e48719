"""Iterative pruning schedules: pure functions ``(target, n_steps) -> cumulative fractions``.

``schedule(0.5, 4)`` lists, for each of the 4 steps, the fraction of the original cost (MACs,
parameters or channels, whatever the target counts) removed *after* that step; the last entry is
the target. Register new ones with ``@register_schedule("name")``.
"""

from __future__ import annotations

from collections.abc import Callable

from medprune.errors import ConfigError
from medprune.registry import Registry

ScheduleFn = Callable[[float, int], list[float]]
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


def register_schedule(name: str, *, override: bool = False) -> Callable[[ScheduleFn], ScheduleFn]:
    """Register a schedule function under ``name``."""
    return SCHEDULES.register(name, override=override)


def get_schedule(name: str) -> ScheduleFn:
    """The schedule called ``name`` (ConfigError with did-you-mean otherwise)."""
    return SCHEDULES.get(name)


def list_schedules(pattern: str = "*") -> list[str]:
    """Registered schedule names."""
    return SCHEDULES.list(pattern)


def _check(target: float, n_steps: int) -> None:
    if not 0.0 <= target < 1.0:
        raise ConfigError(f"schedule target must be a fraction in [0, 1); got {target!r}.")
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be an integer >= 1; got {n_steps!r}.")


@register_schedule("linear")
def linear(target: float, n_steps: int) -> list[float]:
    """Equal increments: ``target * i / n`` for ``i = 1..n``."""
    _check(target, n_steps)
    return [target * (i + 1) / n_steps for i in range(n_steps)]


@register_schedule("geometric")
def geometric(target: float, n_steps: int) -> list[float]:
    """The kept fraction shrinks by the same factor each step: ``1 - (1 - target)^(i / n)``.

    Each step removes the same *fraction of what is left*, so early steps remove more in absolute
    terms than late ones.
    """
    _check(target, n_steps)
    return [1.0 - (1.0 - target) ** ((i + 1) / n_steps) for i in range(n_steps)]
