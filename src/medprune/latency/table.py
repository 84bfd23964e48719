"""Per-layer latency lookup tables over channel counts.

What is measured: every convolution, transposed convolution and linear layer (1D / 2D / 3D) the
example input reaches, *in isolation*, at its real input shape (captured with forward hooks), as
a function of ``(kept input channels, kept output channels)`` on a small grid of widths: the full
width plus hardware-friendly widths (multiples of 32 / 16 / 8 / ... as the width allows, at most
``max_points`` per dimension, :func:`width_grid`). A fresh layer of the same type and
hyper-parameters (kernel, stride, padding, dilation, bias) is built for each grid point and timed
with random input, median of a few repeats (fewer for slow layers, see ``budget_ms``).

Three table modes per layer:

* ``"dense"``: every ``(c_in, c_out)`` grid point is measured (``|in grid| * |out grid|`` timings).
* ``"separable"``: ``T(c_in, c_out) ~ T(c_in, N) * T(M, c_out) / T(M, N)`` (``M``, ``N`` the full
  widths): one row and one column, ``|in| + |out| - 1`` timings. Used for large layers (3D, or
  more than ``dense_max_macs`` MACs) and for ``onnxruntime`` (each point is an ONNX export).
* ``"diagonal"``: grouped / depthwise convolutions, whose input and output shrink together
  (one coupled channel = one conv group): one timing per output width, with the input width and
  the number of groups scaled alongside.

Between grid points, latency is interpolated (bilinear, clamped at the grid's ends). The planner
only moves a group to its grid widths, so single-group dimensions are looked up exactly at
measured points; dimensions fed by several groups (concatenation skips) are interpolated.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.latency.cache import LatencyCache
from medprune.latency.runtimes import Runtime

logger = logging.getLogger(__name__)

TableMode = Literal["auto", "dense", "separable"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYERS = _CONV + _CONVT + (nn.Linear,)


def width_grid(n: int, max_points: int = 8) -> list[int]:
    """Ascending widths in ``[1, n]`` to measure: ``n`` plus hardware-friendly multiples.

    ``width_grid(64) == [8, 16, 24, 32, 40, 48, 56, 64]``; ``width_grid(512)`` holds multiples
    of 32; widths up to ``max_points`` are all listed.
    """
    if max_points < 2:
        raise ConfigError(f"max_points must be >= 2; got {max_points!r}.")
    if n <= max_points:
        return list(range(1, n + 1))
    m = next(m for m in (32, 16, 8, 4, 2, 1) if n // m >= max_points - 1)
    pts = list(range(m, n, m))
    if len(pts) > max_points - 1:
        step = (len(pts) - 1) / (max_points - 2)
        pts = sorted({pts[round(i * step)] for i in range(max_points - 1)})
    return sorted(set(pts) | {n})


@dataclass(frozen=True)
class LayerCall:
    """One call of a conv / transposed conv / linear module on the example input.

    Attributes:
        module_name: dotted name in ``model.named_modules()``.
        input_shape: the input ``(B, C, *S)`` (linear: ``(..., in_features)``).
        output_shape: the output shape.
        c_in, c_out: full input / output channels (features).
        groups: convolution groups (1 for linear).
    """

    module_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    c_in: int
    c_out: int
    groups: int

    @property
    def out_spatial(self) -> int:
        """Output elements per output channel (``prod(S)`` times the batch)."""
        return math.prod(self.output_shape) // max(self.c_out, 1)

    def macs(self, module: nn.Module) -> int:
        """Multiply-accumulates of the full-width call.

        Conv / linear: ``weight.numel() / c_out`` per output element; transposed conv:
        ``weight.numel() / c_in`` per input element.
        """
        n_weight = module.weight.numel()
        if isinstance(module, _CONVT):
            return n_weight * math.prod(self.input_shape) // max(self.c_in, 1)
        return n_weight * math.prod(self.output_shape) // max(self.c_out, 1)


def capture_calls(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[LayerCall]:
    """Every conv / transposed conv / linear call of one eval-mode forward pass, in order."""
    calls: list[LayerCall] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not args or not torch.is_tensor(args[0]) or not torch.is_tensor(output):
            return
        x = args[0]
        if isinstance(module, nn.Linear):
            c_in, c_out, groups = module.in_features, module.out_features, 1
        else:
            c_in, c_out = int(x.shape[1]), int(output.shape[1])
            groups = int(module.groups)
        calls.append(
            LayerCall(names[module], tuple(x.shape), tuple(output.shape), c_in, c_out, groups)
        )

    for m in model.modules():
        if isinstance(m, _LAYERS):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return calls


def resized_layer(
    module: nn.Module, call: LayerCall, c_in: int, c_out: int
) -> tuple[nn.Module, tuple[int, ...]]:
    """A fresh layer like ``module`` with ``c_in`` / ``c_out`` channels and its input shape.

    Grouped convolutions keep their channels per group: ``groups * c_out / call.c_out`` groups.
    """
    shape = list(call.input_shape)
    if isinstance(module, nn.Linear):
        shape[-1] = c_in
        return nn.Linear(c_in, c_out, bias=module.bias is not None), tuple(shape)
    groups = call.groups
    if groups > 1:
        per_out = call.c_out // groups
        groups = max(1, c_out // per_out)
        c_in = groups * (call.c_in // call.groups)
        c_out = groups * per_out
    shape[1] = c_in
    base = next(t for t in _CONV + _CONVT if isinstance(module, t))
    kwargs: dict[str, Any] = dict(
        kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
        dilation=module.dilation, groups=groups, bias=module.bias is not None,
    )  # fmt: skip
    if isinstance(module, _CONVT):
        kwargs["output_padding"] = module.output_padding
    else:
        kwargs["padding_mode"] = module.padding_mode
    return base(c_in, c_out, **kwargs), tuple(shape)


def signature(module: nn.Module, call: LayerCall) -> dict[str, Any]:
    """What a layer's latency depends on (no weights): type, hyper-parameters, shapes."""
    sig: dict[str, Any] = {
        "type": type(module).__name__ if isinstance(module, _LAYERS) else "?",
        "base": next((t.__name__ for t in _LAYERS if isinstance(module, t)), "?"),
        "input_shape": list(call.input_shape),
        "c_in": call.c_in,
        "c_out": call.c_out,
        "groups": call.groups,
        "bias": getattr(module, "bias", None) is not None,
    }
    for attr in ("kernel_size", "stride", "padding", "dilation", "output_padding", "padding_mode"):
        if hasattr(module, attr):
            v = getattr(module, attr)
            sig[attr] = list(v) if isinstance(v, tuple) else v
    return sig


def _interp(grid: Sequence[int], values: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation of ``values`` over ascending ``grid``, clamped."""
    if x <= grid[0]:
        return float(values[0])
    if x >= grid[-1]:
        return float(values[-1])
    i = bisect_left(grid, x)
    x0, x1 = grid[i - 1], grid[i]
    t = (x - x0) / (x1 - x0)
    return float(values[i - 1] + t * (values[i] - values[i - 1]))


@dataclass
class TableEntry:
    """Measured latency (ms) of one layer call over its width grid.

    Attributes:
        mode: ``"dense"``, ``"separable"`` or ``"diagonal"`` (see the module docstring).
        in_grid, out_grid: ascending widths (the last is the full width).
        values: dense: ``len(in_grid)`` rows of ``len(out_grid)``; separable: ``{"row": T(c_in,
            N) over in_grid, "col": T(M, c_out) over out_grid}``; diagonal: ``T`` over out_grid.
    """

    mode: str
    in_grid: list[int]
    out_grid: list[int]
    values: Any

    def lookup(self, c_in: float, c_out: float) -> float:
        """Latency in ms at ``(c_in, c_out)`` (interpolated between grid points)."""
        if self.mode == "diagonal":
            return _interp(self.out_grid, self.values, c_out)
        if self.mode == "separable":
            row, col = self.values["row"], self.values["col"]
            full = max(float(row[-1]), 1e-9)
            return _interp(self.in_grid, row, c_in) * _interp(self.out_grid, col, c_out) / full
        cols = [_interp(self.out_grid, r, c_out) for r in self.values]
        return _interp(self.in_grid, cols, c_in)

    @property
    def full_ms(self) -> float:
        return self.lookup(self.in_grid[-1], self.out_grid[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "in_grid": self.in_grid, "out_grid": self.out_grid,
                "values": self.values}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableEntry:
        """Rebuild an entry from :meth:`to_dict`; ``ValueError`` / ``TypeError`` / ``KeyError``
        when a field is missing or not a number (a damaged cache file)."""
        mode = str(d["mode"])
        in_grid = [int(v) for v in d["in_grid"]]
        out_grid = [int(v) for v in d["out_grid"]]
        raw = d["values"]
        values: Any
        if mode == "separable":
            values = {"row": [float(v) for v in raw["row"]], "col": [float(v) for v in raw["col"]]}
            shapes_ok = len(values["row"]) == len(in_grid) and len(values["col"]) == len(out_grid)
        elif mode == "diagonal":
            values = [float(v) for v in raw]
            shapes_ok = len(values) == len(out_grid)
        elif mode == "dense":
            values = [[float(v) for v in r] for r in raw]
            shapes_ok = len(values) == len(in_grid) and all(len(r) == len(out_grid) for r in values)
        else:
            raise ValueError(f"unknown table mode {mode!r}")
        if not shapes_ok:
            raise ValueError("table values do not match its grid")
        return cls(mode, in_grid, out_grid, values)


@dataclass
class TableSettings:
    """How tables are measured.

    Attributes:
        mode: ``"auto"`` (dense for small 2D layers, separable for 3D / large / ONNX Runtime),
            ``"dense"`` or ``"separable"``.
        max_points: widths per dimension (:func:`width_grid`).
        warmup, repeats: untimed and timed calls per grid point (median).
        budget_ms: time budget per grid point; slow layers get fewer repeats (at least 1).
        dense_max_macs: ``"auto"`` measures layers above this many MACs separably.
    """

    mode: TableMode = "auto"
    max_points: int = 8
    warmup: int = 2
    repeats: int = 7
    budget_ms: float = 250.0
    dense_max_macs: int = 50_000_000
    counters: dict[str, int] = field(default_factory=lambda: {"timings": 0})

    def key(self) -> dict[str, Any]:
        """The settings a timing depends on, for cache keys (more repeats = a new table)."""
        return {"warmup": self.warmup, "repeats": self.repeats, "budget_ms": self.budget_ms}


#: A timing whose run-to-run spread (half the p10-p90 range over the median) exceeds this many
#: percent, and :data:`NOISY_SPREAD_MS` in absolute terms, is noisy: another process competed for
#: the cores. Such a table point is timed once more and the lower median kept; a table still
#: noisy then is used but never cached.
NOISY_SPREAD_PCT = 25.0
#: Jitter below this (ms) is scheduler / timer noise of sub-millisecond calls, not a busy machine.
NOISY_SPREAD_MS = 0.05


def noisy(spread_pct: float, median_ms: float) -> bool:
    """True for a timing whose spread (percent of ``median_ms``) says the machine was busy."""
    return spread_pct > NOISY_SPREAD_PCT and spread_pct / 100.0 * median_ms > NOISY_SPREAD_MS


def choose_mode(
    module: nn.Module, call: LayerCall, runtime: Runtime, settings: TableSettings
) -> str:
    if call.groups > 1:
        return "diagonal"
    if settings.mode != "auto":
        return settings.mode
    if runtime.name == "onnxruntime" or len(call.input_shape) >= 5:
        return "separable"
    return "separable" if call.macs(module) > settings.dense_max_macs else "dense"


def measure_entry(
    module: nn.Module,
    call: LayerCall,
    in_grid: list[int],
    out_grid: list[int],
    runtime: Runtime,
    settings: TableSettings,
    cache: LatencyCache | None,
) -> TableEntry:
    """The :class:`TableEntry` of one call, from ``cache`` when present, else measured (and stored)."""
    mode = choose_mode(module, call, runtime, settings)
    if mode == "diagonal":
        in_grid = [call.c_in]
    key_parts = {"layer": signature(module, call), "mode": mode, "in_grid": in_grid,
                 "out_grid": out_grid, **settings.key(), **runtime.fingerprint()}  # fmt: skip
    if cache is not None:
        found = cache.get(key_parts, TableEntry.from_dict)
        if found is not None:
            return found
    noisy_points = 0

    def t(c_in: int, c_out: int) -> float:
        nonlocal noisy_points
        layer, shape = resized_layer(module, call, c_in, c_out)
        timings = []
        for _ in range(2):  # a noisy timing (busy machine) is repeated once; the lower one counts
            settings.counters["timings"] = settings.counters.get("timings", 0) + 1
            timings.append(runtime.time_module_spread(
                layer, shape, warmup=settings.warmup, repeats=settings.repeats,
                budget_ms=settings.budget_ms,
            ))  # fmt: skip
            if not noisy(timings[-1][1], timings[-1][0]):
                return timings[-1][0]
        noisy_points += 1
        return min(ms for ms, _ in timings)

    values: Any
    if mode == "diagonal":
        values = [t(call.c_in, co) for co in out_grid]
    elif mode == "separable":
        full = t(in_grid[-1], out_grid[-1])
        row = [t(ci, out_grid[-1]) for ci in in_grid[:-1]] + [full]
        col = [t(in_grid[-1], co) for co in out_grid[:-1]] + [full]
        values = {"row": row, "col": col}
    else:
        values = [[t(ci, co) for co in out_grid] for ci in in_grid]
    entry = TableEntry(mode, in_grid, out_grid, values)
    settings.counters["noisy"] = settings.counters.get("noisy", 0) + noisy_points
    if cache is not None and not noisy_points:
        cache.put(key_parts, entry.to_dict())
    return entry
