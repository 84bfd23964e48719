"""Latency-targeted planning: a greedy knapsack over coupled groups, calibrated by measurement.

HALP-style (Shen et al., *Structural Pruning via Latency-Saliency Knapsack*, NeurIPS 2022):
start from the full model and repeatedly take the move with the **smallest importance lost per
millisecond saved**. A move takes one group from its current width to one of its next
``lookahead`` lower allowed widths where the predicted latency drops (flat parts of the step
function are skipped); allowed widths are the group's table grid widths
(:func:`~medprune.latency.table.width_grid`: the full width and hardware-friendly multiples)
snapped to the widths the usual constraints allow (``max_per_layer``, ``min_channels``,
``channel_multiple``, ``round_to``, the head-input cap; ignored / pinned groups never move).
The importance of a move is the sum of the group's normalised block scores it removes (the same
normalisation as the global scope of :func:`~medprune.methods.plan.plan_pruning`); the
millisecond saving comes from :class:`~medprune.latency.model.LatencyModel`, with the current
widths of the neighbouring groups (a layer's input width is its producer group's width). Looking
past the next width lets the greedy step over flat parts of the latency step function to the
width where latency actually drops. It stops when the predicted latency is at most
``(1 - goal) * base``.

Calibration: the prediction is a model (isolated layer timings + a linear *rest*), so the plan
is then applied to a copy of the model and measured interleaved with the unpruned one on the same
runtime. When the measured cut misses the target by more than ``tolerance``, the internal
predicted goal is corrected (first step: by the miss; then secant) and the greedy replanned,
with at most ``calibrate`` measurements in all; the measured-closest plan is returned.

Differences from HALP: HALP solves an exact knapsack over neuron-level latency contributions
during training with iterative re-scoring; here the knapsack is greedy, one-shot per pruning
step (iterative schedules call it per step), over coupled groups of the engine, and corrected by
real measurements of the pruned model.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medprune.errors import ConfigError
from medprune.latency.cache import LatencyCache
from medprune.latency.model import LatencyModel
from medprune.latency.runtimes import Runtime, get_runtime
from medprune.latency.table import TableMode, TableSettings
from medprune.latency.timer import interleaved_latency
from medprune.typing import PathLike

logger = logging.getLogger(__name__)

_LAST_REPORT: dict[str, Any] = {}


def last_report() -> dict[str, Any]:
    """A copy of the report of the latest :func:`plan_latency` call in this process
    (``base_ms``, ``predicted`` / ``history``), for step records."""
    return copy.deepcopy(_LAST_REPORT)


@dataclass(frozen=True)
class LatencyOptions:
    """Where and how latency is measured for ``Target(latency=...)``.

    Attributes:
        runtime: ``"torch"`` or ``"onnxruntime"`` (or a :class:`Runtime` instance, e.g. a test double).
        device: ``"cpu"``, ``"cuda[:N]"``; None = the device of the graph's model.
        threads: CPU threads; None = ``torch.get_num_threads()``.
        cache_dir: table cache folder; None = the default (``$MEDPRUNE_CACHE_DIR`` or
            ``~/.cache/medprune/latency``); ``False`` = no cache.
        example_inputs: ``(B, C, *S)`` input(s) to measure at; None = the graph's example input.
        tolerance: accepted distance of the measured cut to the target (0.03 = 3 points).
        calibrate: most real measurements of pruned candidates (0 = trust the prediction).
        calibration_repeats: interleaved rounds per calibration measurement.
        lookahead: grid steps a single move may jump.
        table_mode, max_points, repeats, warmup, budget_ms: table settings (see
            :class:`~medprune.latency.table.TableSettings`).
        progress: progress bar while the table is measured.
        refresh: measure the tables again instead of reading the cache (and store the new ones),
            e.g. after timings taken on a busy machine.
    """

    runtime: str | Runtime = "torch"
    device: str | None = None
    threads: int | None = None
    cache_dir: PathLike | bool | None = None
    example_inputs: Any = None
    tolerance: float = 0.03
    calibrate: int = 3
    calibration_repeats: int = 15
    lookahead: int = 3
    table_mode: TableMode = "auto"
    max_points: int = 8
    repeats: int = 7
    warmup: int = 2
    budget_ms: float = 250.0
    progress: bool = True
    refresh: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.runtime, str):
            # a name typo (did-you-mean), a bad device or thread count fail here, before any work
            get_runtime(self.runtime, self.device, threads=self.threads)
        elif not isinstance(self.runtime, Runtime):
            raise ConfigError(
                f"latency runtime must be a name or a Runtime; got {type(self.runtime).__name__}."
            )
        if not 0.0 < float(self.tolerance) < 1.0:
            raise ConfigError(f"latency tolerance must be in (0, 1); got {self.tolerance!r}.")
        if not isinstance(self.calibrate, int) or self.calibrate < 0:
            raise ConfigError(f"latency calibrate must be an int >= 0; got {self.calibrate!r}.")
        if not isinstance(self.lookahead, int) or self.lookahead < 1:
            raise ConfigError(f"latency lookahead must be an int >= 1; got {self.lookahead!r}.")
        if self.table_mode not in ("auto", "dense", "separable"):
            raise ConfigError(
                f"latency table_mode must be 'auto', 'dense' or 'separable'; got {self.table_mode!r}."
            )

    @classmethod
    def with_extra(
        cls,
        extra: Mapping[str, Any] | None,
        *,
        source: str,
        runtime: str | Runtime,
        device: str | None,
        runtime_from: str,
        device_from: str,
        **defaults: Any,
    ) -> LatencyOptions:
        """Options with ``runtime`` / ``device`` and ``defaults``, then the user's ``extra``
        fields (``tolerance``, ``calibrate``, ``cache_dir``, ...) on top.

        Args:
            extra: the user's further fields; ``source`` names where they came from
                (``"latency_options"``, ``"prune.options.plan_kwargs.latency"``).
            runtime_from, device_from: where runtime and device are given instead
                (``"latency_runtime="``, ``"prune.latency_runtime"``), for the error message.

        Raises:
            ConfigError: an unknown key of ``extra`` (listing the allowed ones), or ``runtime`` /
                ``device`` given in ``extra``.
        """
        extra = dict(extra or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(extra) - fields)
        if unknown:
            raise ConfigError(f"{source} has unknown key(s) {unknown}; allowed: {sorted(fields)}.")
        for key, where in (("runtime", runtime_from), ("device", device_from)):
            if key in extra:
                raise ConfigError(
                    f"give the latency {key} as {where}, not in {source} (got "
                    f"{source}={{{key!r}: {extra[key]!r}}})."
                )
        return cls(runtime=runtime, device=device, **{**defaults, **extra})

    def make_runtime(self, graph: Any) -> Runtime:
        if isinstance(self.runtime, Runtime):
            return self.runtime
        device = self.device
        if device is None:
            param = next(graph.model.parameters(), None)
            device = str(param.device) if param is not None else "cpu"
        return get_runtime(self.runtime, device, threads=self.threads)

    def settings(self) -> TableSettings:
        return TableSettings(
            mode=self.table_mode, max_points=self.max_points, warmup=self.warmup,
            repeats=self.repeats, budget_ms=self.budget_ms,
        )  # fmt: skip

    def make_cache(self) -> LatencyCache | None:
        if self.cache_dir is False:
            return None
        folder = None if self.cache_dir in (None, True) else self.cache_dir
        return LatencyCache(folder, refresh=self.refresh)  # type: ignore[arg-type]


def build_latency_model(
    graph: Any, options: LatencyOptions, *, groups: Sequence[Any] | None = None
) -> LatencyModel:
    """The :class:`LatencyModel` of ``graph`` measured (or cached) as ``options`` say."""
    runtime = options.make_runtime(graph)
    return LatencyModel.build(
        graph, runtime, example_inputs=options.example_inputs, cache=options.make_cache(),
        settings=options.settings(), groups=groups, progress=options.progress,
    )  # fmt: skip


@dataclass
class _Track:
    """Greedy state of one slot: allowed widths (descending) and importance prefix sums."""

    slot: Any
    gi: int  # index in the latency model
    widths: list[int]
    cum: list[float]  # cum[b] = importance of the b lowest blocks
    pos: int = 0

    def importance(self, w_from: int, w_to: int) -> float:
        n, b = self.slot.group.n_channels, self.slot.block
        return self.cum[(n - w_to) // b] - self.cum[(n - w_from) // b]


def _tracks(slots: Sequence[Any], lat: LatencyModel) -> list[_Track]:
    index = {k: i for i, k in enumerate(lat.keys)}
    tracks = []
    for s in slots:
        n = s.group.n_channels
        allowed = sorted(s.allowed_keep)
        picked = set()
        for w in lat.grids[index[s.group.key]]:
            above = [k for k in allowed if k >= w]
            picked.add(above[0] if above else n)
        picked.add(n)
        picked.add(allowed[0])
        widths = sorted(picked, reverse=True)
        cum = [0.0] + torch.cumsum(s.norm_scores.double(), 0).tolist()
        tracks.append(_Track(s, index[s.group.key], widths, cum))
    return tracks


def greedy_plan(
    slots: Sequence[Any], lat: LatencyModel, goal: float, *, lookahead: int = 3
) -> tuple[dict[str, int], float]:
    """Kept widths ``{group key: kept}`` whose predicted latency is ``<= (1 - goal) * base``.

    Each iteration takes the move with the least importance per ms saved; when that move would
    cross the goal, the move reaching the goal with the least importance is taken instead (so
    the last step does not overshoot with one big jump when a smaller one suffices).

    Returns the widths and the predicted fraction of latency removed (lower than ``goal`` when the
    constraints do not allow more).
    """
    tracks = _tracks(slots, lat)
    by_gi = {t.gi: t for t in tracks}
    kept = list(lat.sizes)
    layer_ms = [lat.layer_ms(i, kept) for i in range(len(lat.layers))]
    current = sum(layer_ms)
    limit = (1.0 - goal) * lat.base_ms
    moves: dict[int, list[tuple[float, float, int, float]]] = {}  # (ratio, saved, j, importance)

    def evaluate(t: _Track) -> list[tuple[float, float, int, float]]:
        found: list[tuple[float, float, int, float]] = []
        w_now = t.widths[t.pos]
        for j in range(t.pos + 1, len(t.widths)):
            if len(found) >= lookahead:
                break
            trial = list(kept)
            trial[t.gi] = t.widths[j]
            saved = sum(layer_ms[i] - lat.layer_ms(i, trial) for i in lat.layers_of[t.gi])
            if saved > 1e-12:  # flat parts of the step function are skipped, not counted
                imp = t.importance(w_now, t.widths[j])
                found.append((imp / saved, saved, j, imp))
        return found

    for t in tracks:
        moves[t.gi] = evaluate(t)
    while current > limit + 1e-12:
        live = [(m, gi) for gi, ms in moves.items() for m in ms]
        if not live:
            break
        (_, saved, j, _), gi = min(live, key=lambda item: (item[0][0], -item[0][1]))
        need = current - limit
        if saved > need:  # the last move: the cheapest one that reaches the goal
            (_, saved, j, _), gi = min(
                (item for item in live if item[0][1] >= need - 1e-12),
                key=lambda item: (item[0][3], item[0][1]),
            )
        t = by_gi[gi]
        t.pos = j
        kept[gi] = t.widths[j]
        for i in lat.layers_of[gi]:
            layer_ms[i] = lat.layer_ms(i, kept)
        current = sum(layer_ms)
        for h in lat.neighbours(gi) | {gi}:
            if h in by_gi:
                moves[h] = evaluate(by_gi[h])
    widths = {lat.keys[t.gi]: kept[t.gi] for t in tracks if kept[t.gi] < t.slot.group.n_channels}
    return widths, 1.0 - current / lat.base_ms if lat.base_ms else 0.0


def widths_to_prune_idx(slots: Sequence[Any], widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """``{key: prune_idx}``: each group's lowest-scored blocks down to its kept width."""
    out = {}
    for s in slots:
        w = widths.get(s.group.key)
        if w is not None and w < s.group.n_channels:
            out[s.group.key] = s.prune_idx((s.group.n_channels - w) // s.block)
    return out


def measured_cut(graph: Any, prune_idx: dict[str, torch.Tensor], runtime: Runtime,
                 inputs: Any, repeats: int) -> tuple[float, float, float]:  # fmt: skip
    """``(cut, base_ms, pruned_ms)``: the pruned copy's measured latency cut vs the model's."""
    from medprune.graph import prune_channels
    from medprune.latency.table import noisy

    g2 = copy.deepcopy(graph)
    prune_channels(g2.model, g2, prune_idx, check=False)
    base = copy.deepcopy(graph.model)
    tb, tp = interleaved_latency([base, g2.model], inputs, runtime=runtime, repeats=repeats)
    if noisy(tb.spread_pct, tb.median_ms) or noisy(tp.spread_pct, tp.median_ms):
        # a busy period: measure once more, keep the steadier of the two
        again = interleaved_latency([base, g2.model], inputs, runtime=runtime, repeats=repeats)
        if max(r.spread_pct for r in again) < max(tb.spread_pct, tp.spread_pct):
            tb, tp = again
    return 1.0 - tp.median_ms / tb.median_ms, tb.median_ms, tp.median_ms


def plan_latency(
    graph: Any,
    slots: Sequence[Any],
    goal: float,
    options: LatencyOptions | None = None,
    *,
    report: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Channels to remove so that ``goal`` of the measured latency goes (see the module doc).

    Args:
        graph: the :class:`~medprune.graph.PruningGraph`.
        slots: planning slots of :func:`~medprune.methods.plan.plan_pruning` (``group``,
            ``block``, ``norm_scores`` ascending, ``allowed_keep``, ``prune_idx(blocks)``).
        goal: fraction of latency to remove, in (0, 1).
        options: runtime, device, cache, calibration; None = defaults (torch on the model's device).

    Returns:
        ``{group key: prune_idx}``. ``report`` (a dict, if given) receives ``base_ms`` (predicted,
        full model), ``predicted`` and the calibration ``history`` (internal goal, predicted and
        measured cut, base and pruned ms per measurement).
    """
    options = options or LatencyOptions()
    report = report if report is not None else {}
    _LAST_REPORT.clear()
    lat = build_latency_model(graph, options, groups=[s.group for s in slots])
    runtime = options.make_runtime(graph)
    _, reach = greedy_plan(slots, lat, 0.999, lookahead=options.lookahead)
    if reach + options.tolerance < goal:
        raise ConfigError(
            f"target latency={goal:.3f} is unreachable: the predicted largest latency cut under "
            f"max_per_layer / min_channels / ignore is {reach:.3f}; lower the target or relax "
            "those limits."
        )
    inputs = options.example_inputs if options.example_inputs is not None else graph.example_inputs
    history: list[dict[str, float]] = []
    seen: dict[tuple[tuple[str, int], ...], float] = {}  # plan -> measured cut
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    closest: dict[str, float] = {}
    p = goal
    for _ in range(4 * max(options.calibrate, 1)):
        widths, predicted = greedy_plan(slots, lat, p, lookahead=options.lookahead)
        prune_idx = widths_to_prune_idx(slots, widths)
        if options.calibrate == 0:
            logger.info(
                "latency plan: predicted cut %.3f (goal %.3f, not measured)", predicted, goal
            )
            report.update(base_ms=lat.base_ms, predicted=predicted, history=[])
            _LAST_REPORT.update(report)
            return prune_idx
        plan_key = tuple(sorted(widths.items()))
        repeated = plan_key in seen
        if repeated:  # the internal goal moved but not far enough to change the plan
            cut = seen[plan_key]
        else:
            cut, base_ms, pruned_ms = measured_cut(
                graph, prune_idx, runtime, inputs, options.calibration_repeats
            )
            seen[plan_key] = cut
            history.append({"internal_goal": p, "predicted": predicted, "measured": cut,
                            "base_ms": base_ms, "pruned_ms": pruned_ms})  # fmt: skip
            logger.info(
                "latency plan %d: predicted cut %.3f, measured %.3f (%.2f -> %.2f ms), goal %.3f",
                len(history) - 1, predicted, cut, base_ms, pruned_ms, goal,
            )  # fmt: skip
            if best is None or abs(cut - goal) < best[0]:
                best = (abs(cut - goal), prune_idx)
                closest = history[-1]
        if abs(cut - goal) <= options.tolerance or len(history) >= options.calibrate:
            break
        p_new = p + (goal - cut) if repeated else _next_goal(history, goal)
        p_new = min(max(p_new, 0.005), min(reach, 0.995))
        if abs(p_new - p) < 1e-3:
            break
        p = p_new
    assert best is not None
    if best[0] > options.tolerance:
        logger.warning(
            "latency target %.3f: the closest measured cut (%.3f) misses it by %.3f (tolerance "
            "%.3f); the timings may be noisy (a busy machine: rerun when it is quiet, with "
            "refresh=True / --latency-refresh), or the latency moves in coarse steps here",
            goal, closest["measured"], best[0], options.tolerance,
        )  # fmt: skip
    report.update(
        base_ms=lat.base_ms, history=history, measured=closest["measured"],
        measured_base_ms=closest["base_ms"], measured_pruned_ms=closest["pruned_ms"],
        missed=best[0] > options.tolerance,
    )  # fmt: skip
    _LAST_REPORT.update(report)
    return best[1]


def _next_goal(history: list[dict[str, float]], goal: float) -> float:
    """The next internal predicted goal: shift by the miss, then secant on (internal, measured)."""
    last = history[-1]
    if len(history) >= 2:
        prev = history[-2]
        dm = last["measured"] - prev["measured"]
        dp = last["internal_goal"] - prev["internal_goal"]
        if abs(dm) > 1e-4 and dp / dm > 0:
            return last["internal_goal"] + (goal - last["measured"]) * dp / dm
    return last["internal_goal"] + (goal - last["measured"])
