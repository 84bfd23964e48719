"""Honest measurement: parameters, MACs, latency, peak memory, size, ONNX and TorchScript export.

::

    import medprune
    m = medprune.measure(model, torch.randn(1, 1, 128, 128), onnx=True, threads=2)
    m.macs, m.latency_ms, m.onnx_latency_ms, m.to_dict()

    from medprune.measure import count_macs, macs_by_module, measure_latency, export_onnx

    # several models compared: timed in one run, repetitions alternating
    results = medprune.measure.interleaved_latency({"base": base, "pruned": pruned}, x)
    medprune.measure.latency_noise(results).describe()

Every function runs the model in eval mode without gradients and leaves it unchanged.

The package is itself callable (``medprune.measure(model, x)`` calls :func:`measure`), so the
top-level name works whether ``medprune.measure`` resolves to this package or to the function.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from medprune.measure.export import export_onnx, export_torchscript
from medprune.measure.flops import count_macs, macs_by_module
from medprune.measure.interleaved import LatencyNoise, interleaved_latency, latency_noise
from medprune.measure.latency import LatencyResult, measure_latency, onnx_latency
from medprune.measure.memory import peak_memory
from medprune.measure.params import count_params, serialized_size
from medprune.measure.summary import Measurement, measure

__all__ = [
    "LatencyNoise",
    "LatencyResult",
    "Measurement",
    "count_macs",
    "count_params",
    "export_onnx",
    "export_torchscript",
    "interleaved_latency",
    "latency_noise",
    "macs_by_module",
    "measure",
    "measure_latency",
    "onnx_latency",
    "peak_memory",
    "serialized_size",
]


class _CallableModule(types.ModuleType):
    """Module type whose call forwards to :func:`measure`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Measurement:
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
