"""Wall-clock latency of PyTorch and ONNX Runtime inference.

Each timed call is one full forward pass on the whole batch, timed with ``time.perf_counter``
after ``warmup`` untimed calls. On CUDA the device is synchronised before and after each call so
the time covers the kernels, not only their launch. The thread count is set for the measurement
and restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.measure._inputs import (
    as_input_tuple,
    batch_size_of,
    eval_mode,
    forward_checked,
    place,
    repeat_batch,
)
from medprune.typing import ExampleInputs, PathLike


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one forward pass over ``repeats`` timed runs, in milliseconds.

    Attributes:
        median_ms, p10_ms, p90_ms, mean_ms, min_ms: statistics of ``times_ms``.
        times_ms: every timed run, in order.
        repeats, warmup: timed and untimed runs.
        threads: intra-op threads used.
        batch_size: rows in the timed batch.
        device: ``"cpu"`` or ``"cuda:N"``.
        backend: ``"torch"`` or ``"onnxruntime"``.
        ci_low_ms, ci_high_ms: distribution-free ~95% confidence interval of the median (order
            statistics of ``times_ms``; the whole range when ``repeats`` < 6).
        interleaved: the runs alternated with other models' runs
            (:func:`~medprune.measure.interleaved_latency`) instead of running back to back.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    times_ms: tuple[float, ...]
    repeats: int
    warmup: int
    threads: int
    batch_size: int
    device: str
    backend: str
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    interleaved: bool = False

    @property
    def spread_pct(self) -> float:
        """Run-to-run spread: half the p10-p90 range as a percentage of the median."""
        return 100.0 * (self.p90_ms - self.p10_ms) / (2.0 * self.median_ms)

    @property
    def noise_pct(self) -> float | None:
        """Width of the median's confidence interval as a percentage of the median: two medians
        closer than this are not told apart by the measurement."""
        if self.ci_low_ms is None or self.ci_high_ms is None:
            return None
        return 100.0 * (self.ci_high_ms - self.ci_low_ms) / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``times_ms`` as a list, plus ``spread_pct`` and ``noise_pct``)."""
        d = asdict(self)
        d["times_ms"] = list(self.times_ms)
        d["spread_pct"] = self.spread_pct
        d["noise_pct"] = self.noise_pct
        return d


def _percentile(sorted_ms: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of sorted values."""
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def median_interval(sorted_ms: list[float]) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median of sorted values.

    Uses the order statistics of ranks ``n/2 -+ 0.98 sqrt(n)`` (the binomial sign-test interval,
    normal approximation), so it holds for any distribution of run times, outliers included.
    """
    n = len(sorted_ms)
    half = 0.98 * math.sqrt(n)
    lo = max(int(math.floor(n / 2 - half)), 1)  # 1-based ranks
    hi = min(int(math.ceil(1 + n / 2 + half)), n)
    return sorted_ms[lo - 1], sorted_ms[hi - 1]


def _check_counts(warmup: int, repeats: int) -> None:
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats must be an int >= 1; got {repeats!r}.")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ConfigError(f"warmup must be an int >= 0; got {warmup!r}.")


def resolve_threads(threads: int | None) -> int:
    """``threads`` checked, or the current ``torch.get_num_threads()`` when None."""
    if threads is None:
        return torch.get_num_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be an int >= 1 or None; got {threads!r}.")
    return threads


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Set ``torch.set_num_threads`` for the block (None keeps it); restore it on exit."""
    before = torch.get_num_threads()
    wanted = resolve_threads(threads)
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _time_calls(
    fn: Callable[[], object], warmup: int, repeats: int, sync: Callable[[], None]
) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times_ms.append((time.perf_counter() - start) * 1e3)
    return times_ms


def _result(times_ms: list[float], **meta: Any) -> LatencyResult:
    s = sorted(times_ms)
    ci_low, ci_high = median_interval(s)
    return LatencyResult(
        median_ms=statistics.median(s),
        p10_ms=_percentile(s, 10),
        p90_ms=_percentile(s, 90),
        mean_ms=statistics.fmean(s),
        min_ms=s[0],
        times_ms=tuple(times_ms),
        ci_low_ms=ci_low,
        ci_high_ms=ci_high,
        **meta,
    )


def measure_latency(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 20,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> LatencyResult:
    """Time ``model(*example_inputs)`` in eval mode under ``torch.inference_mode``.

    Args:
        model: the network (a copy is moved to ``device`` if it lives elsewhere).
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors.
        threads: intra-op CPU threads (``torch.set_num_threads``, restored afterwards);
            None keeps the current setting.
        warmup: untimed calls before timing.
        repeats: timed calls.
        device: ``"cpu"`` or ``"cuda[:N]"`` (synchronised around each call).
        batch_size: repeat the examples along dim 0 to this many rows; None keeps ``B``.

    Returns:
        A LatencyResult (median, p10, p90, mean, min and every run, in ms).

    Raises:
        ConfigError: bad ``threads``/``warmup``/``repeats``/``batch_size``/``device``.
        ShapeMismatchError: the model rejects inputs of this shape.
    """
    _check_counts(warmup, repeats)
    inputs = repeat_batch(as_input_tuple(example_inputs), batch_size)
    model, inputs = place(model, inputs, device)
    dev = inputs[0].device
    if dev.type == "cuda":

        def sync() -> None:
            torch.cuda.synchronize(dev)
    else:

        def sync() -> None:
            return None

    with num_threads(threads) as used, eval_mode(model), torch.inference_mode():
        forward_checked(model, inputs)  # fails early with a clear shape error
        times_ms = _time_calls(lambda: model(*inputs), warmup, repeats, sync)
    return _result(
        times_ms,
        repeats=repeats,
        warmup=warmup,
        threads=used,
        batch_size=batch_size_of(inputs),
        device=str(dev),
        backend="torch",
    )


def onnx_latency(
    path: PathLike,
    inputs: ExampleInputs,
    *,
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 20,
    batch_size: int | None = None,
) -> LatencyResult:
    """Time an ONNX model under ONNX Runtime's CPU execution provider.

    Args:
        path: an ``.onnx`` file (e.g. from :func:`export_onnx`).
        inputs: a tensor ``(B, C, *S)`` or a tuple of tensors, fed to the graph inputs in order.
        threads: ``intra_op_num_threads`` of the session; None uses ``torch.get_num_threads()``
            so that PyTorch and ONNX Runtime are compared at the same thread count.
        warmup: untimed runs.
        repeats: timed runs.
        batch_size: repeat the examples along dim 0 to this many rows (needs a dynamic batch).

    Returns:
        A LatencyResult with ``backend="onnxruntime"``.
    """
    _check_counts(warmup, repeats)
    used = resolve_threads(threads)
    tensors = repeat_batch(as_input_tuple(inputs), batch_size)
    session, feed = ort_session(path, tensors, threads=used)
    times_ms = _time_calls(lambda: session.run(None, feed), warmup, repeats, lambda: None)
    return _result(
        times_ms,
        repeats=repeats,
        warmup=warmup,
        threads=used,
        batch_size=batch_size_of(tensors),
        device="cpu",
        backend="onnxruntime",
    )


def ort_session(
    path: PathLike, tensors: tuple[torch.Tensor, ...], *, threads: int
) -> tuple[Any, dict[str, Any]]:
    """An ONNX Runtime CPU session of ``path`` and its input feed (graph input name -> array).

    Args:
        path: an ``.onnx`` file.
        tensors: the inputs ``(B, C, *S)``, fed to the graph inputs in order.
        threads: ``intra_op_num_threads`` (``inter_op_num_threads`` is 1).

    Raises:
        ConfigError: the file does not exist, or its input count differs from ``tensors``.
    """
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ConfigError(f"ONNX file not found: {str(path)!r}; export one with export_onnx().")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle worker threads sleep instead of spinning: models timed in turn (interleaved) would
    # otherwise compete with the spinning threads of the session that ran before them
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(tensors):
        raise ConfigError(
            f"{path} has {len(names)} input(s) {names}; got {len(tensors)} tensor(s)."
        )
    feed = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors, strict=True)}
    return session, feed
