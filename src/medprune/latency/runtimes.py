"""Runtimes a latency table can be measured on: ``torch`` (CPU or CUDA) and ``onnxruntime`` (CPU).

A runtime times one module on one input shape in isolation (:meth:`Runtime.time_module`) and
prepares a whole model for the interleaved timer (:meth:`Runtime.prepare`, a zero-argument
callable running one forward pass). ``torch`` runs in eval mode under ``torch.inference_mode``
and synchronises CUDA around every timed call. ``onnxruntime`` exports the module to ONNX in a
temporary folder and times an ``InferenceSession`` on the CPU execution provider
(``intra_op_num_threads = threads``).

Names are looked up in a :class:`~medprune.registry.Registry`, so ``"tourch"`` fails with
``Did you mean 'torch'?``.
"""

from __future__ import annotations

import functools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.registry import Registry

RUNTIMES: Registry[type[Runtime]] = Registry("latency runtime")

_DEVICE_FIX = (
    "Measure on the CPU: latency_device='cpu' in Python, --latency-device cpu on the command line "
    "(config key prune.latency_device)."
)


def register_runtime(name: str) -> Callable[[type[Runtime]], type[Runtime]]:
    """Register a :class:`Runtime` subclass under ``name``."""
    return RUNTIMES.register(name)


def list_runtimes() -> list[str]:
    """Names of the registered runtimes (``["onnxruntime", "torch"]``)."""
    return RUNTIMES.list()


def get_runtime(
    name: str, device: str | torch.device | None = None, *, threads: int | None = None
) -> Runtime:
    """The runtime called ``name`` on ``device`` (None = ``"cpu"``) with ``threads`` CPU threads.

    Raises:
        ConfigError: unknown name (with did-you-mean), a device the runtime cannot use
            (``onnxruntime`` on CUDA), CUDA without a GPU, or a bad thread count.
    """
    cls = RUNTIMES.get(name)
    if device is None or device == "auto":
        use_cuda = device == "auto" and name != "onnxruntime" and torch.cuda.is_available()
        device = "cuda" if use_cuda else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"latency device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}. "
            f"{_DEVICE_FIX}"
        ) from None
    return cls(resolved, threads=threads)


@functools.cache
def cpu_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` ``model name``, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def _median_time(
    fn: Callable[[], object],
    sync: Callable[[], None],
    warmup: int,
    repeats: int,
    budget_ms: float | None,
) -> tuple[float, float]:
    """``(median, spread)``: median wall time of ``fn`` in ms and its run-to-run spread (half the
    p10-p90 range as a percentage of the median; 0 for fewer than 3 runs).

    At least one untimed warm-up call; with ``budget_ms``, a call slower than the budget ends the
    warm-up and the repeats are cut so that they take about ``budget_ms`` (at least one).
    """
    first = 0.0
    for _ in range(max(warmup, 1)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        first = (time.perf_counter() - start) * 1e3
        if budget_ms is not None and first > budget_ms:
            break
    if budget_ms is not None and first > 0:
        repeats = max(1, min(repeats, int(budget_ms / first)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(times)
    if len(times) < 3 or median <= 0:
        return median, 0.0
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return median, 100.0 * (deciles[-1] - deciles[0]) / (2.0 * median)


class Runtime:
    """Times modules on one device with a fixed thread count.

    Attributes:
        name: registry name.
        device: the torch device.
        threads: intra-op CPU threads (``torch.get_num_threads()`` when None was given).
    """

    name = ""

    def __init__(self, device: torch.device, *, threads: int | None = None) -> None:
        if threads is not None and (
            not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
        ):
            raise ConfigError(f"latency threads must be an int >= 1 or None; got {threads!r}.")
        self.device = device
        self.threads = threads if threads is not None else torch.get_num_threads()
        self.check_device()

    def check_device(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"latency device {str(self.device)!r} needs CUDA, which is not available here. "
                f"{_DEVICE_FIX}"
            )
        if self.device.type not in ("cpu", "cuda"):
            raise ConfigError(
                f"latency device must be 'cpu' or 'cuda[:N]'; got {str(self.device)!r}. "
                f"{_DEVICE_FIX}"
            )

    @property
    def device_name(self) -> str:
        """Hardware name for cache keys: the CPU model string or the CUDA device name."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return cpu_name()

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}

    def fingerprint(self) -> dict[str, Any]:
        """What a measurement depends on besides the layer: runtime, hardware, threads, versions."""
        return {
            "runtime": self.name,
            "device": self.device.type,
            "device_name": self.device_name,
            "threads": self.threads,
            **self.versions(),
        }

    def prepare(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
        """A zero-argument callable running one forward pass of ``model`` on ``inputs``."""
        raise NotImplementedError  # pragma: no cover - subclasses implement it

    def sync(self) -> None:
        """Wait for queued device work (CUDA); no-op on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_module(self, module: nn.Module, input_shape: tuple[int, ...], **timing: Any) -> float:
        """Median latency in ms of ``module`` on a random input ``input_shape`` (e.g. ``(B, C, *S)``);
        ``timing``: ``warmup``, ``repeats``, ``budget_ms`` of :meth:`time_module_spread`."""
        return self.time_module_spread(module, input_shape, **timing)[0]

    def time_module_spread(
        self,
        module: nn.Module,
        input_shape: tuple[int, ...],
        *,
        warmup: int = 2,
        repeats: int = 10,
        budget_ms: float | None = 300.0,
    ) -> tuple[float, float]:
        """``(median ms, spread %)`` of ``module`` on a random input ``input_shape``: warm-up
        calls, then ``repeats`` timed ones (fewer for calls slower than ``budget_ms``), see
        :func:`_median_time`."""
        x = torch.randn(input_shape)
        with _threads(self.threads):
            fn = self.prepare(module, (x,))
            return _median_time(fn, self.sync, warmup, repeats, budget_ms)


class _threads:
    """Context manager setting ``torch.set_num_threads`` and restoring it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.before = torch.get_num_threads()

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        if self.n != self.before:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        if torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)


@register_runtime("torch")
class TorchRuntime(Runtime):
    """Eager PyTorch in eval mode under ``torch.inference_mode`` (CPU or CUDA)."""

    name = "torch"

    def prepare(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
        model = model.to(self.device).eval()
        moved = tuple(t.to(self.device) for t in inputs)

        def run() -> object:
            with torch.inference_mode():
                return model(*moved)

        return run


@register_runtime("onnxruntime")
class OnnxRuntime(Runtime):
    """ONNX Runtime, CPU execution provider, all graph optimisations, ``threads`` intra-op threads.

    Each prepared model is exported to a temporary ``.onnx`` file (the TorchScript-based exporter
    for speed, falling back to the ``torch.export`` one) and loaded into an ``InferenceSession``.
    """

    name = "onnxruntime"

    def check_device(self) -> None:
        if self.device.type != "cpu":
            raise ConfigError(
                f"latency runtime 'onnxruntime' measures the CPU execution provider only; got "
                f"device {str(self.device)!r}. {_DEVICE_FIX} Use runtime 'torch' to time CUDA."
            )
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:  # pragma: no cover - a core dependency here
            raise ConfigError(
                "latency runtime 'onnxruntime' needs the onnxruntime package: pip install onnxruntime."
            ) from e

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        # tables timed with spinning worker threads (before 2026-12) are not reused
        return {"torch": torch.__version__, "onnxruntime": ort.__version__, "spinning": "off"}

    def prepare(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
        import onnxruntime as ort

        model = model.cpu().eval()
        with tempfile.TemporaryDirectory(prefix="medprune-lat-") as tmp:
            path = Path(tmp) / "layer.onnx"
            _export(model, inputs, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # idle worker threads sleep instead of spinning: models timed in turn (interleaved) would
            # otherwise compete with the spinning threads of the session that ran before them
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=False)}
        return lambda: session.run(None, feed)


def _export(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    import warnings

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, inputs, str(path), dynamo=False)
    except Exception:  # noqa: BLE001 - the legacy exporter lacks some ops; use the new one
        from medprune.measure import export_onnx

        export_onnx(model, inputs, path, dynamic_batch=False, check=False)
