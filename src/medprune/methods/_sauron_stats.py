"""Sauron's two feature-map distances and its threshold schedule, as pure functions.

See ``methods-sauron-taylor-mfp.md`` §2.3 (``delta_opt``), §2.4 (``delta_prune``) and §2.6
(the tau / kappa / rho / mu schedule).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from medprune.errors import ConfigError


def pool(features: torch.Tensor, factor: int) -> torch.Tensor:
    """Average pooling with kernel = stride = ``factor`` over ``S`` of ``(B, C, *S)``.

    Skipped when ``factor <= 1`` or a spatial size is smaller than ``factor``.
    """
    spatial = features.shape[2:]
    if factor <= 1 or any(s < factor for s in spatial):
        return features
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(spatial)]
    return fn(features, factor, factor)


def clustering_distance(
    features: torch.Tensor, *, pool_factor: int = 2, eps: float = 1e-8
) -> torch.Tensor:
    """``delta_opt``: mean RMS distance of the min-max normalised, pooled maps to channel 0.

    Args:
        features: ``(B, C, *S)`` block output (differentiable).
        pool_factor: average-pooling factor ``sf`` (reference: 2).
        eps: added to the min-max denominator (constant maps) and under the square root (so the
            gradient stays finite when two maps coincide); the reference has neither.

    Returns:
        Scalar tensor: ``mean_{b, c >= 1} sqrt(mean_s (P[b,0,s] - P[b,c,s])^2)``, where ``P`` is
        the pooled map after normalising every map over *all* its spatial positions (the reference
        normalises 3-D maps per depth slice). Zero when ``C < 2``.
    """
    B, C = features.shape[:2]
    if C < 2:
        return features.new_zeros(())
    flat = features.flatten(2)  # (B, C, S)
    low = flat.amin(-1, keepdim=True)
    high = flat.amax(-1, keepdim=True)
    normed = ((flat - low) / (high - low + eps)).view_as(features)  # (B, C, *S)
    pooled = pool(normed, pool_factor).flatten(2)  # (B, C, S')
    sq = (pooled[:, :1] - pooled[:, 1:]).pow(2).mean(-1)  # (B, C-1)
    return torch.sqrt(sq + eps * eps).mean()


def prune_distances(
    features: torch.Tensor, reference: int, *, pool_factor: int = 2
) -> torch.Tensor:
    """``delta_prune``: per-channel distance to the reference map, normalised per sample.

    Args:
        features: ``(B, C, *S)`` block output (not normalised).
        reference: reference channel ``r`` (its own distance is 0).
        pool_factor: average-pooling factor.

    Returns:
        ``(C,)`` float tensor in ``[0, 1]``: ``mean_b e[b,c] / (max_c e[b,c] + 1e-15)`` with
        ``e[b,c] = sqrt(mean_s (P[b,r,s] - P[b,c,s])^2)``.
    """
    pooled = pool(features.detach().float(), pool_factor).flatten(2)  # (B, C, S')
    e = (pooled[:, reference : reference + 1] - pooled).pow(2).mean(-1).sqrt()  # (B, C)
    return (e / (e.amax(1, keepdim=True) + 1e-15)).mean(0)


@dataclass
class LayerSchedule:
    """Per-layer threshold state of Sauron's schedule.

    Attributes:
        tau: current threshold.
        patience: epochs left before tau may be raised again.
        channels: channel count after each pruning (first entry: the starting count).
    """

    tau: float
    patience: int = 0
    channels: list[int] = field(default_factory=list)


def tau_grid(tau_init: float, tau_max: float, kappa: int) -> list[float]:
    """``linspace(tau_init, tau_max, kappa + 1)`` (reference: 0.001 .. 0.3 in 16 values)."""
    return torch.linspace(tau_init, tau_max, kappa + 1, dtype=torch.float64).tolist()


def converged(
    layer: LayerSchedule,
    train_losses: Sequence[float],
    val_losses: Sequence[float],
    *,
    rho: int,
    mu: float,
    faithful: bool,
) -> bool:
    """The reference's plateau test for one layer (§2.6).

    True when (1) at least ``rho + 1`` validation losses exist, (2) the latest epoch training
    loss lies inside ``[min, max]`` of the previous ``rho``, (3) the latest validation loss is not a
    new best, and (4) the previous epoch's pruning removed fewer than ``ceil(mu * n)`` of this
    layer's ``n`` channels. ``faithful=True`` reproduces the reference's check (3), which compares
    against a history that already holds the latest value and therefore never blocks.
    """
    if len(val_losses) < rho + 1 or len(train_losses) < rho + 1 or len(layer.channels) < 2:
        return False
    previous = train_losses[-rho - 1 : -1]  # empty when rho = 0: no plateau window
    if previous and not min(previous) <= train_losses[-1] <= max(previous):
        return False
    history = val_losses if faithful else val_losses[:-1]
    if history and val_losses[-1] < min(history):
        return False
    n_prev, n_now = layer.channels[-2], layer.channels[-1]
    return n_prev - n_now < math.ceil(mu * n_prev)


def update_threshold(
    layer: LayerSchedule,
    grid: Sequence[float],
    train_losses: Sequence[float],
    val_losses: Sequence[float],
    *,
    rho: int,
    mu: float,
    faithful: bool,
) -> bool:
    """Advance one layer's schedule by an epoch; returns True when tau was raised."""
    if layer.patience > 0:
        layer.patience -= 1
        return False
    if not converged(layer, train_losses, val_losses, rho=rho, mu=mu, faithful=faithful):
        return False
    higher = [t for t in grid if t > layer.tau + 1e-12]
    if not higher:
        return False
    layer.tau = higher[0]
    layer.patience = rho
    return True


def channels_below(
    distances: torch.Tensor,
    tau: float,
    reference: int,
    *,
    keep_min: int = 1,
    multiple: int = 1,
) -> torch.Tensor:
    """Channels whose distance is under ``tau``, never the reference, keeping ``keep_min`` channels.

    With ``multiple = m > 1`` only whole blocks of ``m`` channels whose largest distance is under
    ``tau`` are removed. The lowest distances go first when the cap binds. Returns sorted int64.
    """
    n = distances.numel()
    m = max(1, multiple)
    block_d = distances.reshape(n // m, m).amax(1)  # (n_blocks,)
    below = block_d < tau
    below[reference // m] = False
    candidates = below.nonzero().reshape(-1)
    room = n // m - math.ceil(max(keep_min, 1) / m)
    if candidates.numel() > room:
        order = torch.argsort(block_d[candidates], stable=True)[: max(room, 0)]
        candidates = candidates[order]
    idx = (candidates[:, None] * m + torch.arange(m)[None]).reshape(-1)
    return torch.sort(idx).values.long()


def validate_options(
    lambda_opt: float, pool_factor: int, tau_init: float, tau_max: float, kappa: int,
    rho: int, mu: float, min_channels: int, ignore: Sequence[str],
) -> None:  # fmt: skip
    """Check the options of :func:`medprune.methods.sauron.sauron` (ConfigError otherwise)."""
    if not isinstance(lambda_opt, (int, float)) or lambda_opt < 0:
        raise ConfigError(f"lambda_opt must be a number >= 0; got {lambda_opt!r}.")
    if not isinstance(pool_factor, int) or pool_factor < 1:
        raise ConfigError(f"pool_factor must be an integer >= 1; got {pool_factor!r}.")
    if not 0.0 <= tau_init <= tau_max <= 1.0:
        raise ConfigError(
            f"need 0 <= tau_init <= tau_max <= 1; got tau_init={tau_init!r}, tau_max={tau_max!r}."
        )
    if not isinstance(kappa, int) or kappa < 1:
        raise ConfigError(
            f"kappa (number of threshold steps) must be an integer >= 1; got {kappa!r}."
        )
    if not isinstance(rho, int) or rho < 0:
        raise ConfigError(f"rho (patience, epochs) must be an integer >= 0; got {rho!r}.")
    if not 0.0 <= mu <= 1.0:
        raise ConfigError(f"mu must be a fraction in [0, 1]; got {mu!r}.")
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ConfigError(f"min_channels must be an integer >= 1; got {min_channels!r}.")
    if isinstance(ignore, str):
        raise ConfigError(f"ignore must be a list of module names; got the string {ignore!r}.")


# ---- the optional MACs / params target -------------------------------------------------------
def _removed(target: Any, before: tuple[int, int], after: tuple[int, int]) -> float:
    i = 0 if target.kind == "macs" else 1
    return 1.0 - after[i] / before[i] if before[i] else 0.0


def target_reached(target: Any, before: tuple[int, int], after: tuple[int, int]) -> bool | None:
    """Whether a ``macs`` / ``params`` target was met within 1 point (None: no such target).

    Args:
        target: a :class:`~medprune.methods.base.Target` or None.
        before, after: ``(macs, params)`` of the model before and after.
    """
    if target is None or target.kind not in ("macs", "params"):
        return None
    return _removed(target, before, after) >= target.value - 0.01


def target_stopper(target: Any, before: tuple[int, int]) -> Callable[[int, int], bool]:
    """``stop(macs, params)``: True once the ``macs`` / ``params`` target is removed."""

    def stop(macs: int, params: int) -> bool:
        if target.kind not in ("macs", "params"):
            return False
        return _removed(target, before, (macs, params)) >= target.value

    return stop


def warn_short_schedule(
    target: Any, before: tuple[int, int], after: tuple[int, int], epochs: int, rho: int
) -> None:
    """Log why Sauron ended short of its target and what to change."""
    logging.getLogger("medprune.methods.sauron").warning(
        "sauron removed %.1f%% of %s in %d epochs, short of the %.0f%% target. Its thresholds "
        "rise only when a layer has plateaued for rho=%d epochs: train longer, or lower rho / "
        "raise tau_init (e.g. tau_init=0.05, rho=1) for short schedules.",
        100 * _removed(target, before, after), target.kind, epochs, 100 * target.value, rho,
    )  # fmt: skip
