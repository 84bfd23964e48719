"""Latency-targeted pruning: measured per-layer latency tables, a cost model and a planner.

``Target(latency=0.5)`` removes half of the *measured* latency on a chosen runtime and device
(``torch`` on CPU / CUDA, ``onnxruntime`` on CPU). See :mod:`medprune.latency.table` (what is
measured), :mod:`medprune.latency.cache` (the on-disk cache), :mod:`medprune.latency.model`
(the prediction) and :mod:`medprune.latency.planner` (the greedy knapsack and its calibration).
"""

from __future__ import annotations

from medprune.latency.cache import LatencyCache, clear_cache, default_cache_dir
from medprune.latency.model import LatencyModel
from medprune.latency.planner import (
    LatencyOptions,
    build_latency_model,
    greedy_plan,
    measured_cut,
    plan_latency,
)
from medprune.latency.runtimes import (
    OnnxRuntime,
    Runtime,
    TorchRuntime,
    get_runtime,
    list_runtimes,
    register_runtime,
)
from medprune.latency.table import LayerCall, TableEntry, TableSettings, width_grid
from medprune.latency.timer import InterleavedTiming, interleaved_latency

__all__ = [
    "InterleavedTiming",
    "LatencyCache",
    "LatencyModel",
    "LatencyOptions",
    "LayerCall",
    "OnnxRuntime",
    "Runtime",
    "TableEntry",
    "TableSettings",
    "TorchRuntime",
    "build_latency_model",
    "clear_cache",
    "default_cache_dir",
    "get_runtime",
    "greedy_plan",
    "interleaved_latency",
    "list_runtimes",
    "measured_cut",
    "plan_latency",
    "register_runtime",
    "width_grid",
]
