"""``measure``: every number of the report's cost table in one call."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.measure._inputs import (
    as_input_tuple,
    batch_size_of,
    eval_mode,
    forward_checked,
    input_shapes,
    place,
    repeat_batch,
)
from medprune.measure.export import export_onnx
from medprune.measure.flops import count_macs
from medprune.measure.latency import measure_latency, num_threads, onnx_latency
from medprune.measure.memory import peak_memory
from medprune.measure.params import count_params, serialized_size
from medprune.typing import ExampleInputs


@dataclass(frozen=True)
class Measurement:
    """Cost of one model on one input shape.

    Attributes:
        params: number of parameters.
        macs: multiply-accumulates of one forward pass over the whole batch.
        latency_ms: median PyTorch latency of one batch, or None if not measured.
        latency: the full PyTorch LatencyResult as a dict, or None.
        peak_memory_bytes: peak bytes of inference (parameters + buffers + inputs + live
            activations), or None if not measured.
        size_bytes: bytes of ``torch.save(state_dict)``.
        onnx_latency_ms: median ONNX Runtime latency of one batch, or None if not measured.
        device: where PyTorch ran (``"cpu"``, ``"cuda:0"``).
        threads: intra-op threads used for the timings.
        batch_size: rows in the measured batch.
        input_shape: the shape of each input, e.g. ``((1, 1, 128, 128),)``.
    """

    params: int
    macs: int
    latency_ms: float | None
    latency: dict[str, Any] | None
    peak_memory_bytes: int | None
    size_bytes: int
    onnx_latency_ms: float | None
    device: str
    threads: int
    batch_size: int
    input_shape: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["input_shape"] = [list(s) for s in self.input_shape]
        return d


def measure(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    latency: bool = True,
    onnx: bool = False,
    threads: int | None = None,
    repeats: int = 20,
    warmup: int = 5,
    device: str | torch.device = "cpu",
    memory: bool = True,
    batch_size: int | None = None,
) -> Measurement:
    """Parameters, MACs, latency, peak memory, size and (optionally) ONNX Runtime latency.

    Args:
        model: the network; it is measured in eval mode and left unchanged (a copy is moved to
            ``device`` if it lives elsewhere).
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors.
        latency: time PyTorch inference (median of ``repeats`` after ``warmup``).
        onnx: also export to a temporary ONNX file and time it under ONNX Runtime (CPU).
        threads: intra-op threads for every timing; None keeps ``torch.get_num_threads()``.
        repeats: timed runs per latency.
        warmup: untimed runs per latency.
        device: ``"cpu"`` or ``"cuda[:N]"`` for PyTorch latency and memory.
        memory: measure peak inference memory.
        batch_size: repeat the examples along dim 0 to this many rows first; None keeps ``B``.

    Returns:
        A frozen Measurement; ``.to_dict()`` gives JSON.

    Raises:
        ConfigError: ``example_inputs`` is not a tensor or tuple of tensors, or a bad option.
        ShapeMismatchError: the model rejects the inputs (wrong rank, channels or size); the
            message gives the received shape and the original error is chained.
    """
    inputs = repeat_batch(as_input_tuple(example_inputs), batch_size)
    model, inputs = place(model, inputs, device)
    with num_threads(threads) as used:
        with eval_mode(model), torch.no_grad():
            forward_checked(model, inputs)  # one clear shape error before anything else
        timing = (
            measure_latency(model, inputs, warmup=warmup, repeats=repeats, device=device)
            if latency
            else None
        )
        onnx_ms = None
        if onnx:
            with tempfile.TemporaryDirectory(prefix="medprune-onnx-") as tmp:
                path = export_onnx(model, inputs, Path(tmp) / "model.onnx")
                cpu_inputs = tuple(t.cpu() for t in inputs)
                onnx_ms = onnx_latency(
                    path, cpu_inputs, threads=used, warmup=warmup, repeats=repeats
                ).median_ms
        return Measurement(
            params=count_params(model),
            macs=count_macs(model, inputs),
            latency_ms=timing.median_ms if timing else None,
            latency=timing.to_dict() if timing else None,
            peak_memory_bytes=peak_memory(model, inputs, device=device) if memory else None,
            size_bytes=serialized_size(model),
            onnx_latency_ms=onnx_ms,
            device=str(inputs[0].device),
            threads=used,
            batch_size=batch_size_of(inputs),
            input_shape=input_shapes(inputs),
        )
