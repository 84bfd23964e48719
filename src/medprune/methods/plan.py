"""Pruning plans: which channels of which groups go, for a ratio, a per-layer table or a budget.

``plan_pruning(graph, scores, target)`` returns ``{group.key: prune_idx}`` (sorted int64 group
channel indices; groups with nothing to remove are left out). Scopes:

* ``"uniform"``: the same fraction of every group's channels. With a MACs / params target the
  fraction is found by bisection.
* ``"per_layer"``: a fraction per group from the ``per_layer`` table (``{pattern: ratio}``;
  the first pattern matching the group key or one of its producers' module names wins; other
  groups get ``target.ratio`` or 0).
* ``"global"`` (default): one ranking across groups of per-group normalised scores (each group's
  block scores divided by their mean absolute value, so groups on different scales compete
  fairly). ``Target(ratio=r)`` removes ``r`` of all channels; ``Target(macs=x)`` /
  ``Target(params=x)`` removes the lowest-ranked channels until ``x`` of the MACs / parameters
  are gone, searched by bisection over the length of the ranking with ``graph.estimate`` (no
  re-tracing), to within 1 percentage point where the channel granularity allows.
  ``Target(latency=x)`` removes ``x`` of the *measured* latency (runtime and device from
  ``latency=LatencyOptions(...)``): a greedy knapsack over the groups with per-layer latency
  tables, calibrated by measuring the pruned model (:mod:`medprune.latency`; global scope only).

Constraints in every scope: at most ``max_per_layer`` of a group's channels go; a group keeps at
least ``max(min_channels, group.min_channels)`` channels; channels go in whole blocks of
``group.channel_multiple``; the kept count is a multiple of ``round_to`` (unless nothing is
removed); groups matching ``ignore`` (and pinned groups) are untouched.

Head input: the groups whose channels are read by the module producing the model output (the
classifier / segmentation head, found from the engine's pinned output group) lose at most
``head_input_max`` (default 0.25) of their channels. In a segmentation net this is the narrow
last decoder layer, where the rare class's sparse detectors (low by every magnitude / rank
criterion) sit; removing them can make the foreground class impossible. Other groups take the
rest of a MACs / params budget.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from medprune.errors import ConfigError
from medprune.graph.group import PruningGroup
from medprune.methods.base import Target

logger = logging.getLogger(__name__)

Scope = Literal["global", "uniform", "per_layer"]


def matches(group: PruningGroup, patterns: Sequence[str]) -> str | None:
    """The first pattern matching the group key or a producer module (exact, prefix or glob)."""
    names = [group.key] + [s.module_name for s in group.slices if s.role == "out"]
    for pat in patterns:
        for name in names:
            if name == pat or name.startswith(pat + ".") or fnmatch.fnmatchcase(name, pat):
                return pat
    return None


OUTPUT_PIN_PREFIX = "model output"


def head_input_keys(graph: Any) -> set[str]:
    """Keys of the prunable groups read (``"in"`` slices) by the module(s) producing the output.

    The head modules are the producers (``"out"`` slices) of the groups the engine pins because
    they are the model output (``pinned_reason`` starting with ``"model output"``). Graphs
    without ``groups`` (e.g. test doubles) have no head.
    """
    groups = getattr(graph, "groups", None)
    if not groups:
        return set()
    heads = {
        s.module_name
        for g in groups
        if not g.prunable and str(g.pinned_reason or "").startswith(OUTPUT_PIN_PREFIX)
        for s in g.slices
        if s.role == "out"
    }
    return {
        g.key
        for g in groups
        if g.prunable and any(s.role == "in" and s.module_name in heads for s in g.slices)
    }


@dataclass
class _Slot:
    """Planning state of one group: block scores (ascending order) and allowed kept counts."""

    group: PruningGroup
    order: torch.Tensor  # block ids by ascending score
    norm_scores: torch.Tensor  # normalised block scores, ascending
    block: int  # channels per block
    allowed_keep: list[int]  # kept channel counts allowed, ascending (always contains n)

    @property
    def max_remove_blocks(self) -> int:
        return (self.group.n_channels - self.allowed_keep[0]) // self.block

    def snap(self, remove_blocks: int) -> int:
        """Largest allowed number of removed blocks <= ``remove_blocks``."""
        n = self.group.n_channels
        keep = n - min(remove_blocks, self.max_remove_blocks) * self.block
        for k in self.allowed_keep:
            if k >= keep:
                return (n - k) // self.block
        return 0

    def prune_idx(self, remove_blocks: int) -> torch.Tensor:
        blocks = self.order[: self.snap(remove_blocks)]
        idx = (blocks[:, None] * self.block + torch.arange(self.block)).reshape(-1)
        return torch.sort(idx).values.long()


def _make_slot(
    group: PruningGroup,
    scores: torch.Tensor,
    *,
    min_channels: int,
    round_to: int,
    max_per_layer: float,
) -> _Slot:
    n = group.n_channels
    block = max(1, int(group.channel_multiple))
    if n % block:
        raise ConfigError(
            f"group {group.key!r} has {n} channels, not a multiple of its channel_multiple {block}."
        )
    if tuple(scores.shape) != (n,):
        raise ConfigError(
            f"scores for group {group.key!r} have shape {tuple(scores.shape)}; expected ({n},)."
        )
    block_scores = scores.detach().float().reshape(-1, block).mean(1)  # (n_blocks,)
    order = torch.sort(block_scores, stable=True).indices
    denom = block_scores.abs().mean().clamp_min(1e-12)
    floor_keep = max(min_channels, group.min_channels, math.ceil(n * (1 - max_per_layer) - 1e-9))
    step = block * round_to // math.gcd(block, round_to)
    allowed = [k for k in range(step, n + 1, step) if k >= floor_keep]
    if n not in allowed:
        allowed.append(n)
    return _Slot(group, order, (block_scores / denom)[order], block, allowed)


def _fraction_removed(graph: Any, base: Any, removed: dict[str, torch.Tensor], kind: str) -> float:
    cost = graph.estimate(removed)
    before, after = getattr(base, kind), getattr(cost, kind)
    return 1.0 - after / before if before else 0.0


def plan_pruning(
    graph: Any,
    scores: Mapping[str, torch.Tensor],
    target: Target | None,
    *,
    ignore: Sequence[str] = (),
    min_channels: int = 1,
    round_to: int = 1,
    max_per_layer: float = 0.9,
    scope: Scope = "global",
    per_layer: Mapping[str, float] | None = None,
    tolerance: float = 0.01,
    head_input_max: float | None = 0.25,
    latency: Any = None,
) -> dict[str, torch.Tensor]:
    """Choose the channels to remove.

    Args:
        graph: a :class:`medprune.graph.PruningGraph` (``prunable_groups()``, and ``estimate``
            for MACs / params targets).
        scores: ``{group.key: (n_channels,)}`` from a criterion, higher = more important.
        target: ``Target(ratio=)``, ``Target(macs=)`` or ``Target(params=)`` (None only with
            ``scope="per_layer"``).
        ignore: module names, key prefixes or glob patterns of groups to leave untouched
            (non-string entries, e.g. module types meant for ``build_graph``, are skipped). The
            default is empty because the engine already pins the groups feeding the model
            output (the classifier / segmentation head's output channels).
        min_channels: fewest channels any group keeps.
        round_to: kept channel counts are multiples of this (hardware-friendly widths).
        max_per_layer: largest fraction of one group's channels that may go, in ``(0, 1)``.
        scope: ``"global"``, ``"uniform"`` or ``"per_layer"`` (see the module docstring).
        per_layer: ``{pattern: ratio}`` for ``scope="per_layer"``.
        tolerance: accepted distance to a MACs / params target (fraction; 0.01 = 1 point).
        head_input_max: largest fraction of channels the groups feeding the output layer (the
            head's input, e.g. the last decoder layer before a 1x1 segmentation head) may lose,
            in ``[0, 1)``; it only lowers ``max_per_layer`` for those groups. ``None``: no
            special cap. Protects the rare class's sparse detectors (see the module docstring).
        latency: :class:`medprune.latency.LatencyOptions` for ``Target(latency=...)`` (runtime,
            device, threads, cache, calibration); None = defaults (``torch`` on the model's device).

    Returns:
        ``{group.key: prune_idx}`` with sorted int64 group-channel indices.

    Raises:
        ConfigError: invalid arguments, missing scores, or an unreachable target (the message
            names the largest reachable fraction).
    """
    _validate(target, scope, per_layer, min_channels, round_to, max_per_layer)
    if head_input_max is not None and not (
        isinstance(head_input_max, (int, float)) and 0.0 <= float(head_input_max) < 1.0
    ):
        raise ConfigError(
            f"head_input_max must be a fraction in [0, 1) or None; got {head_input_max!r}."
        )
    heads = head_input_keys(graph) if head_input_max is not None else set()
    ignore = [ignore] if isinstance(ignore, str) else [i for i in ignore if isinstance(i, str)]
    slots = []
    for g in graph.prunable_groups():
        if matches(g, ignore) is not None:
            continue
        if g.key not in scores:
            raise ConfigError(f"no scores for group {g.key!r}; score every prunable group.")
        slots.append(
            _make_slot(
                g,
                scores[g.key],
                min_channels=min_channels,
                round_to=round_to,
                max_per_layer=(
                    min(max_per_layer, float(head_input_max))
                    if g.key in heads and head_input_max is not None
                    else max_per_layer
                ),
            )
        )
    if not slots:
        raise ConfigError(
            "no prunable group is left to plan (all pinned or ignored); check ignore=."
        )
    if scope == "per_layer":
        table = dict(per_layer or {})
        default = target.value if target is not None else 0.0
        ratios = [table[p] if (p := matches(s.group, list(table))) else default for s in slots]
        return _by_ratios(slots, ratios)
    assert target is not None
    if target.kind == "latency":
        from medprune.latency.planner import plan_latency

        return plan_latency(graph, slots, target.value, latency)
    if scope == "uniform":
        if target.kind == "ratio":
            return _by_ratios(slots, [target.value] * len(slots))
        return _search(graph, slots, target, tolerance, uniform=True)
    if target.kind == "ratio":
        total = sum(s.group.n_channels for s in slots)
        return _global_prefix(slots, _channels_to_blocks(slots, target.value * total))
    return _search(graph, slots, target, tolerance, uniform=False)


def _validate(
    target: Target | None,
    scope: str,
    per_layer: Mapping[str, float] | None,
    min_channels: int,
    round_to: int,
    max_per_layer: float,
) -> None:
    if scope not in ("global", "uniform", "per_layer"):
        raise ConfigError(f"scope must be 'global', 'uniform' or 'per_layer'; got {scope!r}.")
    if target is None and scope != "per_layer":
        raise ConfigError(f"scope={scope!r} needs a target, e.g. Target(macs=0.5).")
    if target is not None and not isinstance(target, Target):
        raise ConfigError(f"target must be a medprune Target; got {type(target).__name__}.")
    if target is not None and target.kind == "latency" and scope != "global":
        raise ConfigError(
            f"a latency target plans over all groups at once; scope must be 'global', got {scope!r}."
        )
    if scope == "per_layer":
        if not per_layer:
            raise ConfigError("scope='per_layer' needs per_layer={pattern: ratio, ...}.")
        if target is not None and target.kind != "ratio":
            raise ConfigError(
                "scope='per_layer' takes its ratios from per_layer=; a MACs / params target "
                f"cannot be combined with it (got {target}); use scope='global' or 'uniform'."
            )
        for pat, r in per_layer.items():
            if not isinstance(r, (int, float)) or not 0.0 <= r < 1.0:
                raise ConfigError(f"per_layer[{pat!r}] must be a ratio in [0, 1); got {r!r}.")
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ConfigError(f"min_channels must be an integer >= 1; got {min_channels!r}.")
    if not isinstance(round_to, int) or round_to < 1:
        raise ConfigError(f"round_to must be an integer >= 1; got {round_to!r}.")
    if not 0.0 < float(max_per_layer) < 1.0:
        raise ConfigError(f"max_per_layer must be in (0, 1); got {max_per_layer!r}.")


def _by_ratios(slots: list[_Slot], ratios: Sequence[float]) -> dict[str, torch.Tensor]:
    """Each group removes ``ratio`` of its channels (kept count rounded to the nearest allowed)."""
    plan = {}
    for s, r in zip(slots, ratios, strict=True):
        n = s.group.n_channels
        want_keep = n * (1.0 - r)
        keep = min(s.allowed_keep, key=lambda k: (abs(k - want_keep), -k))
        blocks = (n - keep) // s.block
        if blocks:
            plan[s.group.key] = s.prune_idx(blocks)
    return plan


def _global_order(slots: list[_Slot]) -> tuple[torch.Tensor, torch.Tensor]:
    """All blocks of all groups by ascending normalised score: (slot id, block rank in slot)."""
    slot_ids = torch.cat([torch.full((len(s.order),), i) for i, s in enumerate(slots)])
    ranks = torch.cat([torch.arange(len(s.order)) for s in slots])
    values = torch.cat([s.norm_scores for s in slots])
    order = torch.sort(values, stable=True).indices
    return slot_ids[order], ranks[order]


def _global_prefix(slots: list[_Slot], k: int) -> dict[str, torch.Tensor]:
    """Remove the ``k`` lowest-ranked blocks globally (skipping blocks beyond a group's cap)."""
    counts = _prefix_counts(slots, k)
    return {s.group.key: s.prune_idx(c) for s, c in zip(slots, counts, strict=True) if s.snap(c)}


def _prefix_counts(slots: list[_Slot], k: int) -> list[int]:
    slot_ids, _ = _global_order(slots)
    counts = torch.bincount(slot_ids[:k], minlength=len(slots)).tolist()
    return [min(c, s.max_remove_blocks) for s, c in zip(slots, counts, strict=True)]


def _channels_to_blocks(slots: list[_Slot], n_channels: float) -> int:
    """Length of the global block prefix removing about ``n_channels`` channels."""
    slot_ids, _ = _global_order(slots)
    sizes = torch.tensor([slots[i].block for i in slot_ids.tolist()])
    cum = torch.cumsum(sizes, 0)
    return int((cum <= n_channels + 1e-9).sum())


def _search(
    graph: Any, slots: list[_Slot], target: Target, tolerance: float, *, uniform: bool
) -> dict[str, torch.Tensor]:
    """Bisection to a MACs / params fraction over the global prefix (or the uniform ratio)."""
    if not hasattr(graph, "estimate"):
        raise ConfigError("a MACs / params target needs a graph with estimate(); use build_graph.")
    kind, goal = target.kind, target.value
    base = graph.estimate({})

    if uniform:
        lo_r, hi_r = 0.0, 0.999

        def plan_at(x: float) -> dict[str, torch.Tensor]:
            return _by_ratios(slots, [x] * len(slots))

        lo, hi = lo_r, hi_r
    else:
        total = len(_global_order(slots)[0])

        def plan_at(x: float) -> dict[str, torch.Tensor]:
            return _global_prefix(slots, int(x))

        lo, hi = 0, total
    best_max = _fraction_removed(graph, base, plan_at(hi), kind)
    if best_max + 1e-9 < goal - tolerance:
        raise ConfigError(
            f"target {kind}={goal:.3f} is unreachable: the largest fraction of {kind} that can "
            f"be removed under max_per_layer / min_channels / ignore is {best_max:.3f}; lower the "
            "target or relax those limits."
        )
    if best_max < goal:
        logger.warning("target %s=%.3f reached only to %.3f", kind, goal, best_max)
        return plan_at(hi)
    for _ in range(60):  # smallest x with removed >= goal
        if (hi - lo) <= (1 if not uniform else 1e-4):
            break
        mid = (lo + hi) // 2 if not uniform else (lo + hi) / 2
        if _fraction_removed(graph, base, plan_at(mid), kind) >= goal:
            hi = mid
        else:
            lo = mid
    f_hi = _fraction_removed(graph, base, plan_at(hi), kind)
    f_lo = _fraction_removed(graph, base, plan_at(lo), kind)
    candidates = [(abs(f_hi - goal), f_hi, plan_at(hi)), (abs(f_lo - goal), f_lo, plan_at(lo))]
    if abs(f_hi - goal) > tolerance and not uniform:
        counts = _prefix_counts(slots, int(lo))
        refined, f_ref = _refine(graph, base, slots, counts, int(lo), goal, tolerance, kind)
        candidates.append((abs(f_ref - goal), f_ref, refined))
    err, achieved, plan = min(candidates, key=lambda c: c[0])
    if err > tolerance:
        logger.warning(
            "target %s=%.3f reached %.3f (channel granularity too coarse)", kind, goal, achieved
        )
    return plan


def _counts_plan(slots: list[_Slot], counts: list[int]) -> dict[str, torch.Tensor]:
    return {s.group.key: s.prune_idx(c) for s, c in zip(slots, counts, strict=True) if s.snap(c)}


def _refine(
    graph: Any,
    base: Any,
    slots: list[_Slot],
    counts: list[int],
    start: int,
    goal: float,
    tolerance: float,
    kind: str,
    max_trials: int = 256,
) -> tuple[dict[str, torch.Tensor], float]:
    """Greedy fill after the prefix: add the next blocks in global order unless they overshoot.

    A group whose next block overshoots ``goal + tolerance`` is skipped from then on, so smaller
    blocks of other groups can close the gap the coarse prefix step leaves.
    """
    slot_ids, _ = _global_order(slots)
    counts = list(counts)
    frozen: set[int] = set()
    current = _fraction_removed(graph, base, _counts_plan(slots, counts), kind)
    for i in slot_ids[start:].tolist()[:max_trials]:
        if current >= goal - tolerance:
            break
        if i in frozen or counts[i] >= slots[i].max_remove_blocks:
            continue
        trial = list(counts)
        trial[i] = _next_allowed(slots[i], counts[i])
        f = _fraction_removed(graph, base, _counts_plan(slots, trial), kind)
        if f <= goal + tolerance:
            counts, current = trial, f
        else:
            frozen.add(i)
    return _counts_plan(slots, counts), current


def _next_allowed(slot: _Slot, count: int) -> int:
    """The smallest block count above ``count`` whose kept width is allowed."""
    now = slot.snap(count)
    for c in range(count + 1, slot.max_remove_blocks + 1):
        if slot.snap(c) > now:
            return c
    return count
