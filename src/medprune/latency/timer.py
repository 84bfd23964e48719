"""Interleaved latency timing: models measured in alternation so that machine noise hits all alike.

``interleaved_latency([base, pruned], x, runtime=...)`` prepares every model on the runtime,
warms each up, then runs ``repeats`` rounds; each round times one forward pass of every model in
turn (the order rotates every round). Medians and the p10-p90 spread come back per model. On a
busy machine a slow period then inflates every model's times, not only one model's, so ratios
(latency cuts) stay meaningful where separate runs would not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.latency.runtimes import Runtime, _threads


@dataclass(frozen=True)
class InterleavedTiming:
    """Latency of one model from an interleaved run, in ms.

    Attributes:
        median_ms, p10_ms, p90_ms: statistics over ``times_ms``.
        times_ms: every timed call, in round order.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    times_ms: tuple[float, ...]

    @property
    def spread(self) -> float:
        """``(p90 - p10) / median``: the relative spread."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms else 0.0

    @property
    def spread_pct(self) -> float:
        """Half the p10-p90 range as a percentage of the median (as
        :attr:`medprune.measure.LatencyResult.spread_pct`)."""
        return 50.0 * self.spread


def _stats(times: list[float]) -> InterleavedTiming:
    s = sorted(times)

    def q(p: float) -> float:
        pos = (len(s) - 1) * p
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return InterleavedTiming(statistics.median(s), q(0.1), q(0.9), tuple(times))


def interleaved_latency(
    models: Sequence[nn.Module],
    example_inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    runtime: Runtime,
    repeats: int = 15,
    warmup: int = 3,
) -> list[InterleavedTiming]:
    """Time ``models`` alternately on ``runtime``; one :class:`InterleavedTiming` per model.

    Args:
        models: networks taking the same ``example_inputs`` ``(B, C, *S)``; they are moved to the
            runtime's device (pass copies if that matters).
        example_inputs: a tensor or tuple of tensors.
        runtime: from :func:`medprune.latency.get_runtime`.
        repeats: rounds (each times every model once).
        warmup: untimed calls per model before the first round.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be an int >= 1; got {repeats!r}.")
    if not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an int >= 0; got {warmup!r}.")
    inputs = (example_inputs,) if torch.is_tensor(example_inputs) else tuple(example_inputs)
    custom = getattr(runtime, "time_interleaved", None)
    if custom is not None:  # runtimes that model time instead of measuring it (tests)
        return [_stats(list(t)) for t in custom(models, inputs, repeats)]
    with _threads(runtime.threads):
        fns = [runtime.prepare(m, inputs) for m in models]
        for fn in fns:
            for _ in range(warmup):
                fn()
        runtime.sync()
        times: list[list[float]] = [[] for _ in fns]
        for r in range(repeats):
            for j in range(len(fns)):
                i = (j + r) % len(fns)
                start = time.perf_counter()
                fns[i]()
                runtime.sync()
                times[i].append((time.perf_counter() - start) * 1e3)
    return [_stats(t) for t in times]
