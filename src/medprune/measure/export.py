"""Export to ONNX and TorchScript, written atomically and checked against PyTorch.

Files are written to a temporary file in the target folder and moved into place with
``os.replace``, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medprune.errors import ConfigError, TraceError
from medprune.measure._inputs import (
    InputTuple,
    as_input_tuple,
    eval_mode,
    forward_checked,
    place,
)
from medprune.typing import ExampleInputs, PathLike

logger = logging.getLogger(__name__)

#: Largest allowed difference between exported and eager outputs (absolute and relative).
ATOL = 1e-4
RTOL = 1e-4


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's FutureWarnings and its 'torchvision is not installed' notices."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registration.setLevel(level)


@contextlib.contextmanager
def _atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # drop terminal colours
    return text.splitlines()[0] if text else ""


def _eager_outputs(model: nn.Module, inputs: InputTuple) -> list[np.ndarray]:
    with torch.no_grad():
        out = forward_checked(model, inputs)
    leaves = [out] if isinstance(out, torch.Tensor) else list(torch.utils._pytree.tree_leaves(out))
    return [t.detach().cpu().numpy() for t in leaves if isinstance(t, torch.Tensor)]


def _compare(kind: str, got: list[np.ndarray], want: list[np.ndarray]) -> None:
    if len(got) != len(want):
        raise TraceError(f"{kind} model returned {len(got)} outputs; PyTorch returned {len(want)}.")
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.shape != w.shape or not np.allclose(g, w, atol=ATOL, rtol=RTOL):
            diff = float(np.abs(g - w).max()) if g.shape == w.shape else float("nan")
            raise TraceError(
                f"{kind} output {i} differs from PyTorch (shape {g.shape} vs {w.shape}, max abs "
                f"diff {diff:.3g} > atol {ATOL}); the model may have data-dependent control flow."
            )


def export_onnx(
    model: nn.Module,
    example_inputs: ExampleInputs,
    path: PathLike,
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
) -> Path:
    """Export ``model`` (eval mode) to one self-contained ``.onnx`` file.

    Uses the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, the
    default in torch 2.9+, needs ``onnxscript``). Inputs are named ``input`` (or ``input_0``,
    ``input_1``, ...) and, with ``dynamic_batch``, dim 0 of each is symbolic.

    Args:
        model: the network; left unchanged.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors (on CPU).
        path: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset version; None uses the exporter's default.
        dynamic_batch: make the batch dimension dynamic.
        check: run the file with ONNX Runtime and require its outputs to match PyTorch's within
            ``atol=rtol=1e-4``.

    Returns:
        ``path`` as a Path.

    Raises:
        TraceError: the exporter failed, or ``check`` found different outputs.
        ShapeMismatchError: the model rejects inputs of this shape.
    """
    if opset is not None and (not isinstance(opset, int) or opset < 7):
        raise ConfigError(f"opset must be an int >= 7 or None; got {opset!r}.")
    model, inputs = place(model, tuple(t.detach() for t in as_input_tuple(example_inputs)), "cpu")
    names = ["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]
    dynamic_shapes = tuple({0: torch.export.Dim.DYNAMIC} for _ in inputs) if dynamic_batch else None
    with eval_mode(model):
        want = _eager_outputs(model, inputs) if check else []
        with _atomic_path(path) as tmp:
            try:
                with _quiet_exporter():
                    torch.onnx.export(
                        model,
                        inputs,
                        str(tmp),
                        input_names=names,
                        opset_version=opset,
                        dynamo=True,
                        dynamic_shapes=dynamic_shapes,
                        external_data=False,
                        verbose=False,
                    )
            except Exception as e:  # the exporter raises many unrelated types
                raise TraceError(
                    f"ONNX export of {type(model).__name__} failed: {type(e).__name__}: "
                    f"{_first_line(e)} (often data-dependent control flow or an op without an "
                    "ONNX translation; the full exporter error is chained above)."
                ) from e
            if check:
                _compare("ONNX", _run_onnx(tmp, inputs), want)
    logger.info("exported ONNX model to %s", path)
    return Path(path)


def _run_onnx(path: PathLike, inputs: InputTuple) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    return [np.asarray(o) for o in session.run(None, feed)]


def export_torchscript(
    model: nn.Module, example_inputs: ExampleInputs, path: PathLike, *, check: bool = True
) -> Path:
    """Trace ``model`` (eval mode) with ``torch.jit.trace`` and save it.

    ``torch.jit`` is deprecated in favour of ``torch.export`` but still the format most C++ and
    mobile runtimes load; its deprecation warning is silenced here.

    Args:
        model: the network; left unchanged.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors.
        path: the ``.pt`` file to write (parent folders are created).
        check: reload the saved file and require its outputs to match PyTorch's within
            ``atol=rtol=1e-4``.

    Returns:
        ``path`` as a Path.

    Raises:
        TraceError: tracing failed, or the reloaded module gives different outputs.
    """
    model, inputs = place(model, tuple(t.detach() for t in as_input_tuple(example_inputs)), "cpu")
    with eval_mode(model):
        want = _eager_outputs(model, inputs) if check else []
        with _atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                with torch.no_grad():
                    traced = torch.jit.trace(model, inputs, check_trace=False)
                torch.jit.save(traced, str(tmp))
            except Exception as e:  # tracing raises many unrelated types
                raise TraceError(
                    f"TorchScript tracing of {type(model).__name__} failed: {type(e).__name__}: {e}"
                ) from e
            if check:
                loaded = torch.jit.load(str(tmp), map_location="cpu")
                with torch.no_grad():
                    out = loaded(*inputs)
                leaves = torch.utils._pytree.tree_leaves(out)
                got = [t.numpy() for t in leaves if isinstance(t, torch.Tensor)]
                _compare("TorchScript", got, want)
    return Path(path)
