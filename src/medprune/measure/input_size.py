"""Find the smallest input a downsampling network runs on, to explain a failed forward pass.

An input too small for a network's downsampling (an 8x8 image for a U-Net with four stride-2
levels) fails deep inside the model with a long traceback about concatenated sizes or a norm
layer with one spatial element. :func:`input_size_error` turns that failure into one error that
names the minimum size, found by probing: forward passes on zeros ``(1, C, s, s[, s])`` of
increasing side ``s`` (powers of two, then refined) under ``torch.no_grad`` in eval mode. When no
probed size runs either, the size is not the cause and no size error is made.

Used by :func:`medprune.measure._inputs.forward_checked` (every measurement), by
:func:`medprune.graph.export.export_model` (``build_graph``, ``prune``) and, through
:func:`check_input_size`, by the pipeline before it trains a model on its data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from medprune.errors import ShapeMismatchError

__all__ = ["SizeProbe", "check_input_size", "input_size_error", "probe_input_size"]

logger = logging.getLogger(__name__)

#: Largest probed side: 2D inputs, 3D inputs (each probe is one batch-1 forward on zeros).
MAX_SIDE_2D, MAX_SIDE_3D = 1024, 256
#: Probing stops at ``4 * max(S)`` (a power of two), but not below these sides, so a model that
#: fails for another reason costs a few small forwards, not one on a 256^3 volume.
MIN_CAP_2D, MIN_CAP_3D = 256, 64
_OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory")


@dataclass(frozen=True)
class SizeProbe:
    """What the probe found.

    Attributes:
        given: the spatial size ``S`` of the input that failed.
        smallest: the smallest side ``s`` for which ``(1, C, s, ..., s)`` runs.
        multiple: sizes must be multiples of this (set by the network's downsampling); None when
            any size from ``smallest`` on runs, or when unknown.
    """

    given: tuple[int, ...]
    smallest: int
    multiple: int | None

    @property
    def too_small(self) -> bool:
        """Whether some axis of ``given`` is below ``smallest``."""
        return any(s < self.smallest for s in self.given)

    def suggestion(self) -> tuple[int, ...]:
        """The nearest size at least ``given`` on each axis that satisfies the probe."""
        m = self.multiple or 1
        return tuple(max(self.smallest, -(-s // m) * m) for s in self.given)


class _Abort(Exception):
    """A probe ran out of memory: stop probing."""


def _runs(model: nn.Module, like: torch.Tensor, side: int) -> bool:
    x = like.new_zeros((1, like.shape[1], *([side] * (like.dim() - 2))))  # (1, C, s, .., s)
    try:
        model(x)
    except (RuntimeError, ValueError, IndexError) as e:
        if any(k in str(e).lower() for k in _OOM_MARKERS):
            raise _Abort from None
        return False
    return True


def _channel_mismatch(model: nn.Module, x: torch.Tensor) -> bool:
    """True when the first convolution clearly expects another channel count or rank."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels != x.shape[1] or len(m.kernel_size) != x.dim() - 2
    return False


def probe_input_size(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> SizeProbe | None:
    """Probe the smallest isotropic input side ``model`` runs on.

    Args:
        model: the network (run in eval mode under ``torch.no_grad``; its modes are restored).
        inputs: the positional inputs that failed; only a single float tensor ``(B, C, H, W)`` or
            ``(B, C, D, H, W)`` is probed.

    Returns:
        A :class:`SizeProbe`, or None when the inputs cannot be probed, the first convolution
        expects another channel count, or no probed size runs (the size is not the cause). Sides
        are probed up to ``4 * max(S)`` (at least 256 in 2D / 64 in 3D, at most 1024 / 256).
    """
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor):
        return None
    x = inputs[0]
    if x.dim() not in (4, 5) or not x.is_floating_point() or _channel_mismatch(model, x):
        return None
    given = tuple(int(s) for s in x.shape[2:])
    hard, floor = (MAX_SIDE_2D, MIN_CAP_2D) if x.dim() == 4 else (MAX_SIDE_3D, MIN_CAP_3D)
    cap = min(hard, max(floor, 1 << (4 * max(given) - 1).bit_length()))
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return _search(model, x, given, cap)
    except _Abort:
        logger.info("input-size probe stopped: out of memory")
        return None
    finally:
        for m, flag in flags:
            m.training = flag


def _search(
    model: nn.Module, x: torch.Tensor, given: tuple[int, ...], cap: int
) -> SizeProbe | None:
    """Powers of two up to ``cap``; then the step to the next size that runs; then the smallest
    running multiple of that step above half the first running power of two."""
    p = 2
    while p <= cap and not _runs(model, x, p):
        p *= 2
    if p > cap:
        return None
    step = 1
    while step <= p and not _runs(model, x, p + step):
        step *= 2
    multiple = step if 1 < step <= p else None
    unit = multiple or 1
    lo, hi = p // 2 // unit, p // unit  # lo * unit fails (or is below 2), hi * unit runs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _runs(model, x, mid * unit):
            hi = mid
        else:
            lo = mid
    return SizeProbe(given=given, smallest=hi * unit, multiple=multiple)


def _size(side: int | tuple[int, ...], ndim: int) -> str:
    sides = (side,) * ndim if isinstance(side, int) else side
    return "x".join(str(s) for s in sides)


def size_message(
    probe: SizeProbe, model_name: str, channels: int, *, setting: str | None = None
) -> str:
    """The one-line explanation of a :class:`SizeProbe`; ``setting`` (``"data.image_size"``)
    names the config key that sets the input size, so the fix is said in its terms."""
    nd = len(probe.given)
    given = "(" + ", ".join(str(s) for s in probe.given) + ")"
    smallest = _size(probe.smallest, nd)
    m = probe.multiple
    multiples = f", and its downsampling needs sizes that are multiples of {m}" if m else ""
    fix = _size(probe.suggestion(), nd)
    example = ", ".join(str(s) for s in probe.suggestion())
    if probe.too_small:
        head = f"input spatial size {given} is too small for {model_name}"
    else:
        head = f"input spatial size {given} does not fit {model_name}'s downsampling"
    if setting is not None:
        return f"{head}: the smallest size that runs is {smallest}{multiples}. " + _setting_fix(
            probe, setting
        )
    return (
        f"{head}: the smallest size that runs is {smallest}{multiples}. Resize or pad "
        f"the inputs, e.g. to {fix} (torch.zeros(1, {channels}, {example}) runs)."
    )


def _setting_fix(probe: SizeProbe, setting: str) -> str:
    """``Set data.image_size >= 16 (e.g. data.image_size: 16), a multiple of 8.``"""
    fix = probe.suggestion()
    value = str(fix[0]) if len(set(fix)) == 1 else "[" + ", ".join(str(s) for s in fix) + "]"
    m = probe.multiple
    multiple = f", a multiple of {m}" if m else ""
    return f"Set {setting} >= {probe.smallest} (e.g. {setting}: {value}){multiple}."


def input_size_error(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    error: BaseException,
    *,
    setting: str | None = None,
) -> ShapeMismatchError | None:
    """A :class:`ShapeMismatchError` naming the minimum size, when ``error`` came from the size.

    Args:
        model: the network that raised ``error`` on ``inputs``.
        inputs: its positional inputs (a single ``(B, C, *S)`` tensor is probed).
        error: the RuntimeError / ValueError of the failed forward pass.
        setting: the config key that sets the input size (``"data.image_size"`` in a config /
            CLI run): the fix names it instead of resizing tensors.

    Returns:
        The error to raise (``raise err from None``), or None when probing finds no size that
        runs, or when the failing size fits the sizes that run (the failure has another cause).
    """
    probe = probe_input_size(model, inputs)
    if probe is None:
        return None
    if probe.suggestion() == probe.given:
        return None  # the failing size fits what the probe found: the size is not the cause
    x = inputs[0]
    first = (str(error).strip().splitlines() or [""])[0]
    msg = size_message(probe, type(model).__name__, int(x.shape[1]), setting=setting)
    return ShapeMismatchError(f"{msg} (The model raised {type(error).__name__}: {first})")


def check_input_size(
    model: nn.Module, example_inputs: torch.Tensor, *, setting: str | None = None
) -> None:
    """Run ``model`` once on the first example ``(1, C, *S)`` (eval mode, no gradients).

    Args:
        model: the network (its modes are restored).
        example_inputs: a batch ``(B, C, *S)`` shaped like the data the model will see.
        setting: the config key that sets the input size (see :func:`input_size_error`).

    Raises:
        ShapeMismatchError: the input is too small for the model's downsampling (one error naming
            the smallest size that runs, no chained traceback), or the model fails on it for
            another reason (the original error is chained).
    """
    x = example_inputs[:1]
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError) as e:
        size_error = input_size_error(model, (x,), e, setting=setting)
        if size_error is not None:
            raise size_error from None
        raise ShapeMismatchError(
            f"{type(model).__name__} fails on inputs of shape {tuple(x.shape)}: "
            f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        ) from e
    finally:
        for m, flag in flags:
            m.training = flag
