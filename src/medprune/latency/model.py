"""``LatencyModel``: predicted latency of a model as a function of each group's kept channels.

Built from a :class:`~medprune.graph.PruningGraph` and per-layer tables
(:mod:`medprune.latency.table`). Each conv / transposed conv / linear call has an input and an
output width. A width is the layer's full width minus, for every prunable group whose slices name
that module's weight with role ``"in"`` (input side) or ``"out"`` (output side), ``k`` times the
group's removed channels (``k`` = the slice's index row length: 1 normally, ``H*W`` after a
flatten, channels per conv group for grouped convolutions). Widths not touched by a prunable
group (pinned, ignored) stay fixed.

Prediction = sum of the layers' table lookups + a *rest* term for everything the tables do not
time (norms, activations, pooling, concatenations, framework overhead): ``rest = measured full
model - sum of the full-width layer timings`` (clamped at 0), modelled as linear in the volume of
the conv / linear outputs (``sum_l c_out_l * spatial_l``), since those ops are elementwise over
the layers' outputs. When the isolated layer timings add up to more than the whole model (per-call
overhead), all layer terms are scaled down by ``measured / sum`` instead. The planner corrects
the remaining error by measuring the pruned model (calibration).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medprune.latency.cache import LatencyCache
from medprune.latency.runtimes import Runtime
from medprune.latency.table import (
    NOISY_SPREAD_PCT,
    LayerCall,
    TableEntry,
    TableSettings,
    capture_calls,
    measure_entry,
    noisy,
    width_grid,
)
from medprune.latency.timer import interleaved_latency
from medprune.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class _Dim:
    full: int
    terms: list[tuple[int, int]] = field(default_factory=list)  # (group index, k)

    def width(self, kept: list[int], sizes: list[int]) -> int:
        return self.full - sum(k * (sizes[g] - kept[g]) for g, k in self.terms)


@dataclass
class _Layer:
    call: LayerCall
    ins: _Dim
    outs: _Dim
    entry: TableEntry | None = None

    def groups(self) -> set[int]:
        return {g for g, _ in self.ins.terms} | {g for g, _ in self.outs.terms}


class LatencyModel:
    """Predicted latency (ms) from kept channel counts per group.

    Attributes:
        keys: prunable group keys, in graph order.
        sizes: their full channel counts.
        grids: per group, the ascending widths the table was measured at (the planner's moves).
        layers: one entry per conv / linear call.
        measured_ms: the real latency of the full model (None when built without measuring it).
        base_ms: predicted latency of the full model (``predict({})``).
    """

    def __init__(
        self,
        keys: list[str],
        sizes: list[int],
        grids: list[list[int]],
        layers: list[_Layer],
        *,
        measured_ms: float | None = None,
    ) -> None:
        self.keys = keys
        self.sizes = sizes
        self.grids = grids
        self.layers = layers
        self._index = {k: i for i, k in enumerate(keys)}
        self.layers_of: list[list[int]] = [[] for _ in keys]
        for li, layer in enumerate(layers):
            for g in layer.groups():
                self.layers_of[g].append(li)
        full = [self.sizes[i] for i in range(len(keys))]
        self._volume_full = sum(self._volume(layer, full) for layer in layers) or 1.0
        table_ms = sum(self._layer_ms(layer, full) for layer in layers)
        self.measured_ms = measured_ms
        self.scale, self.rest_ms = 1.0, 0.0
        if measured_ms is not None and table_ms > 0:
            if measured_ms >= table_ms:
                self.rest_ms = measured_ms - table_ms
            else:
                self.scale = measured_ms / table_ms
        self.base_ms = self.predict({})

    # ---- prediction ---------------------------------------------------------------------
    def kept_vector(self, kept: Mapping[str, int]) -> list[int]:
        """Kept counts in ``keys`` order (groups missing from ``kept`` keep all channels)."""
        vec = list(self.sizes)
        for key, value in kept.items():
            if key in self._index:
                vec[self._index[key]] = int(value)
        return vec

    def _layer_ms(self, layer: _Layer, kept: list[int]) -> float:
        if layer.entry is None:
            return 0.0
        return layer.entry.lookup(
            layer.ins.width(kept, self.sizes), layer.outs.width(kept, self.sizes)
        )

    def _volume(self, layer: _Layer, kept: list[int]) -> float:
        return float(layer.outs.width(kept, self.sizes) * layer.call.out_spatial)

    def layer_ms(self, index: int, kept: list[int]) -> float:
        """Predicted ms of layer ``index`` (table times ``scale``) plus its share of the rest."""
        layer = self.layers[index]
        rest = self.rest_ms * self._volume(layer, kept) / self._volume_full
        return self.scale * self._layer_ms(layer, kept) + rest

    def predict_vector(self, kept: list[int]) -> float:
        return sum(self.layer_ms(i, kept) for i in range(len(self.layers)))

    def predict(self, kept: Mapping[str, int]) -> float:
        """Predicted latency in ms with ``kept`` channels per group key (others unpruned)."""
        return self.predict_vector(self.kept_vector(kept))

    def neighbours(self, g: int) -> set[int]:
        """Groups sharing a layer with group ``g`` (their moves change ``g``'s savings)."""
        return {h for li in self.layers_of[g] for h in self.layers[li].groups()}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        graph: Any,
        runtime: Runtime,
        *,
        example_inputs: Any = None,
        cache: LatencyCache | None = None,
        settings: TableSettings | None = None,
        groups: Iterable[Any] | None = None,
        measure_model: bool = True,
        progress: bool = True,
    ) -> LatencyModel:
        """Measure (or read from ``cache``) the tables of ``graph.model`` on ``runtime``.

        Args:
            graph: a :class:`~medprune.graph.PruningGraph`.
            runtime: where to measure.
            example_inputs: ``(B, C, *S)`` input(s); None = ``graph.example_inputs``.
            cache: the on-disk cache (None: measure everything, store nothing).
            settings: grid / mode / repeats.
            groups: the groups that may shrink (default ``graph.prunable_groups()``).
            measure_model: also time the full model, for the *rest* term (cached too).
            progress: a progress bar (or log lines) over the layers.
        """
        settings = settings or TableSettings()
        model: nn.Module = graph.model
        inputs = example_inputs if example_inputs is not None else graph.example_inputs
        inputs = (inputs,) if torch.is_tensor(inputs) else tuple(inputs)
        inputs = tuple(t.detach().cpu() for t in inputs)
        chosen = list(groups) if groups is not None else list(graph.prunable_groups())
        keys = [g.key for g in chosen]
        sizes = [g.n_channels for g in chosen]
        grids = [width_grid(n, settings.max_points) for n in sizes]
        terms_in: dict[str, list[tuple[int, int]]] = {}
        terms_out: dict[str, list[tuple[int, int]]] = {}
        for gi, g in enumerate(chosen):
            for s in g.slices:
                if s.tensor_name != "weight" or s.role not in ("in", "out"):
                    continue
                side = terms_in if s.role == "in" else terms_out
                side.setdefault(s.module_name, []).append((gi, int(s.index.shape[1])))
        param = next(model.parameters(), None)
        on_model = tuple(t.to(param.device) for t in inputs) if param is not None else inputs
        calls = capture_calls(model, on_model)
        layers = []
        for call in calls:
            ins = _Dim(call.c_in, terms_in.get(call.module_name, []))
            outs = _Dim(call.c_out, terms_out.get(call.module_name, []))
            if call.groups > 1:
                ins.terms = []  # grouped: the input follows the output (diagonal table)
            layers.append(_Layer(call, ins, outs))
        modules = dict(model.named_modules())
        bar = progress_bar(layers, desc="latency table", unit="layer", enabled=progress)
        for layer in bar:
            module = modules[layer.call.module_name]
            layer.entry = measure_entry(
                module, layer.call, _dim_grid(layer.ins, sizes, grids, settings),
                _dim_grid(layer.outs, sizes, grids, settings), runtime, settings, cache,
            )  # fmt: skip
        measured = (
            _model_ms(model, inputs, runtime, cache, getattr(graph, "trace_digest", ""), settings)
            if measure_model
            else None
        )
        result = cls(keys, sizes, grids, layers, measured_ms=measured)
        if settings.counters.get("noisy"):
            warnings.warn(
                f"{settings.counters['noisy']} latency table timing(s) stayed noisy (spread over "
                f"{NOISY_SPREAD_PCT:.0f}% twice): the machine was busy (another process on the cores) "
                "or the timings are unsteady. "
                "The tables are used for this run but not cached; for a reliable plan rerun on a "
                "quiet machine (or with fewer threads).",
                stacklevel=2,
            )
        logger.info(
            "latency model on %s/%s: %d layer calls, measured %.3f ms, tables sum %.3f ms",
            runtime.name, runtime.device, len(layers), measured or float("nan"),
            sum(result._layer_ms(la, list(sizes)) for la in layers),
        )  # fmt: skip
        return result


def _dim_grid(
    dim: _Dim, sizes: list[int], grids: list[list[int]], settings: TableSettings
) -> list[int]:
    """Widths to measure one layer side at: the group's grid (times ``k``), or a generic grid."""
    if not dim.terms:
        return [dim.full]
    if len(dim.terms) == 1:
        g, k = dim.terms[0]
        if sizes[g] * k == dim.full:
            return [w * k for w in grids[g]]
    return width_grid(dim.full, settings.max_points)


def _model_ms(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    runtime: Runtime,
    cache: LatencyCache | None,
    digest: str,
    settings: TableSettings,
) -> float:
    """Real latency of the full model, cached by what its traced forward computes (``digest``,
    so an edited ``forward`` is measured afresh), its structure, input shape and runtime."""
    key = {
        "model": type(model).__name__,
        "structure": repr(model),
        "trace": digest,
        "inputs": [list(t.shape) for t in inputs],
        **settings.key(),
        **runtime.fingerprint(),
    }
    if cache is not None:
        found = cache.get(key, float)
        if found is not None:
            return found
    import copy

    (timing,) = interleaved_latency([copy.deepcopy(model)], inputs, runtime=runtime, repeats=7)
    if cache is not None and not noisy(timing.spread_pct, timing.median_ms):
        cache.put(key, timing.median_ms)
    return timing.median_ms
