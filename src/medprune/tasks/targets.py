"""One normaliser for classification and segmentation targets, used wherever targets are read.

medprune's losses, metrics, criteria and guards work on int64 class indices: ``(B,)`` for
classification and ``(B, *S)`` for segmentation. Data pipelines hand over other forms as well, and
MONAI's losses accept them, so every consumer passes targets through :func:`class_indices` first:

================================  ===========================================================
targets                           read as
================================  ===========================================================
``(B,)`` / ``(B, *S)``            class indices (int, bool, or float holding whole numbers)
``(B, 1)`` / ``(B, 1, *S)``       the same with a channel dim (MONAI ``LoadImage`` /
                                  ``EnsureChannelFirst``); the channel dim is squeezed
``(B, C)`` / ``(B, C, *S)``       one-hot or class probabilities over the ``C`` output channels
                                  (values in ``[0, 1]`` summing to 1 per position); ``argmax``
================================  ===========================================================

Anything else raises :class:`~medprune.errors.ShapeMismatchError` (wrong shape) or
:class:`~medprune.errors.DataError` (wrong values) naming the shapes and the accepted forms. When the
number of classes is known, class indices outside ``[0, C - 1]`` (a PNG mask holding 0 / 255) are a
``DataError`` naming the value, ``C`` and the fix (one min / max per batch).

A single-channel output ``(B, 1)`` / ``(B, 1, *S)`` (the usual sigmoid setup: channel 0 is the
foreground logit) is binary: it has 2 classes, background 0 and foreground 1, and
:func:`class_logits` turns it into the equivalent 2-class logits ``(0, z)``
(``softmax((0, z))[1] = sigmoid(z)``, so cross-entropy on them is BCE-with-logits on ``z``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medprune.errors import DataError, ShapeMismatchError

__all__ = [
    "class_indices",
    "class_indices_like_inputs",
    "class_logits",
    "num_output_classes",
    "targets_for_outputs",
]

_SUM_TOL = 1e-3  # one-hot / probability channels must sum to 1 within this


def _shape_error(
    shape: tuple[int, ...], index_shape: tuple[int, ...], num_classes: int | None
) -> ShapeMismatchError:
    b, s = index_shape[0], index_shape[1:]
    c = "C" if num_classes is None else num_classes

    def fmt(*dims: object) -> str:
        return "(" + ", ".join(str(n) for n in dims) + ("," if len(dims) == 1 else "") + ")"

    return ShapeMismatchError(
        f"targets must have shape {fmt(b, *s)} (class indices), {fmt(b, 1, *s)} (class indices "
        f"with a channel dim) or {fmt(b, c, *s)} (one-hot over the {c} output classes); got "
        f"{shape}. Check the label transform and the model's number of output channels."
    )


def class_indices(
    targets: torch.Tensor, index_shape: Sequence[int], *, num_classes: int | None = None
) -> torch.Tensor:
    """Targets in any accepted form -> int64 class indices of shape ``index_shape``.

    Args:
        targets: ``index_shape`` class indices, the same with a size-1 dim 1, or a one-hot /
            probability map with ``num_classes`` channels in dim 1 (see the module docstring).
        index_shape: the shape of the class indices: ``(B,)`` or ``(B, *S)``.
        num_classes: ``C``, the number of classes (2 for a single-channel output, see
            :func:`num_output_classes`); None accepts any channel count > 1 for one-hot targets
            and skips the range check.

    Returns:
        int64 ``index_shape``, in ``[0, num_classes - 1]`` when ``num_classes`` is given.

    Raises:
        ShapeMismatchError: ``targets`` has none of the accepted shapes.
        DataError: float class indices that are not whole numbers, a channel-dim target whose
            values are not one-hot-like, or a class index outside ``[0, num_classes - 1]``.
    """
    index_shape = tuple(int(n) for n in index_shape)
    shape = tuple(targets.shape)
    if shape == index_shape:
        return _in_range(_whole_numbers(targets, shape), num_classes)
    channel_form = (
        len(shape) == len(index_shape) + 1
        and shape[0] == index_shape[0]
        and shape[2:] == index_shape[1:]
    )
    if channel_form and shape[1] == 1:
        indices = _whole_numbers(targets.squeeze(1), shape)  # (B, 1, *S) -> (B, *S)
        return _in_range(indices, num_classes)
    if channel_form and shape[1] > 1 and (num_classes is None or shape[1] == num_classes):
        return _one_hot_argmax(targets)
    raise _shape_error(shape, index_shape, num_classes)


def num_output_classes(outputs: torch.Tensor) -> int:
    """Classes of logits ``(B, C)`` / ``(B, C, *S)``: ``C``, or 2 for one (sigmoid) channel."""
    if outputs.ndim < 2:
        raise ShapeMismatchError(
            f"model outputs must be (B, C) or (B, C, *S) logits; got shape {tuple(outputs.shape)}."
        )
    return max(int(outputs.shape[1]), 2)


def class_logits(outputs: torch.Tensor) -> torch.Tensor:
    """Logits with one channel per class: a single foreground logit ``z`` ``(B, 1, *S)`` becomes
    ``(0, z)`` ``(B, 2, *S)`` (softmax of it = ``(1 - sigmoid(z), sigmoid(z))``); others as is."""
    if outputs.ndim >= 2 and outputs.shape[1] == 1:
        return torch.cat([torch.zeros_like(outputs), outputs], dim=1)  # (B, 2, *S)
    return outputs


def targets_for_outputs(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """:func:`class_indices` for model ``outputs`` ``(B, C)`` / ``(B, C, *S)``.

    A single-channel output is binary (:func:`num_output_classes`): targets in ``{0, 1}``.

    Returns:
        int64 ``(B,)`` / ``(B, *S)`` in ``[0, C - 1]``.
    """
    num_classes = num_output_classes(outputs)
    index_shape = (outputs.shape[0], *outputs.shape[2:])
    return class_indices(targets, index_shape, num_classes=num_classes)


def class_indices_like_inputs(
    inputs: torch.Tensor, targets: torch.Tensor, *, num_classes: int | None = None
) -> torch.Tensor:
    """:func:`class_indices` before the model has run, deciding the form from ``inputs``.

    For samplers, class counts and class-aware statistics, which read labels without outputs.
    ``inputs`` ``(B, C_in, *S)``; ``targets`` with ``inputs.ndim`` dims are a channel form
    ``(B, K, *S')``, with ``inputs.ndim - 1`` dims class indices ``(B, *S')``, else
    classification ``(B,)`` / ``(B, K)``. ``S'`` may differ from ``S`` (the model's output size).

    Returns:
        int64 ``(B,)`` or ``(B, *S')``.
    """
    b = int(inputs.shape[0])
    if targets.ndim == inputs.ndim and targets.ndim > 2:
        index_shape: tuple[int, ...] = (b, *targets.shape[2:])
    elif targets.ndim == inputs.ndim - 1 and targets.ndim > 1:
        index_shape = tuple(targets.shape)
    else:
        index_shape = (b,)
    return class_indices(targets, index_shape, num_classes=num_classes)


def _whole_numbers(targets: torch.Tensor, given: tuple[int, ...]) -> torch.Tensor:
    if targets.dtype == torch.bool or not (targets.is_floating_point() or targets.is_complex()):
        return targets.long()
    if targets.is_complex() or not bool(torch.isfinite(targets).all()):
        raise DataError(
            f"targets {given} must be integer class indices; got dtype {targets.dtype} with "
            "non-finite or complex values."
        )
    frac = targets != targets.round()
    if bool(frac.any()):
        bad = float(targets[frac][0])
        raise DataError(
            f"targets {given} must be integer class indices; got dtype {targets.dtype} holding "
            f"{bad:g}. Threshold or round the masks (resize label maps with nearest "
            "interpolation), or pass one-hot maps with one channel per class."
        )
    return targets.long()


def _in_range(indices: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """``indices`` after checking them against ``[0, num_classes - 1]`` (one min / max)."""
    if num_classes is None or indices.numel() == 0:
        return indices
    lo, hi = int(indices.min()), int(indices.max())
    bad = lo if lo < 0 else hi if hi >= num_classes else None
    if bad is None:
        return indices
    raise DataError(
        f"target label {bad} is outside the allowed range [0, {num_classes - 1}] for "
        f"num_classes={num_classes} (output channels; one channel = binary 0 / 1). Map the label values to class indices 0..."
        f"{num_classes - 1} (a 0/255 PNG mask: labels // 255, or "
        "monai.transforms.MapLabelValue), or give the model / task as many classes (output "
        "channels) as the labels use."
    )


def _one_hot_argmax(targets: torch.Tensor) -> torch.Tensor:
    t = targets.float() if not targets.is_floating_point() else targets
    shape = tuple(targets.shape)
    if t.numel() == 0:
        return torch.zeros((shape[0], *shape[2:]), dtype=torch.long, device=targets.device)
    lo, hi = float(t.min()), float(t.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise DataError(
            f"targets {shape} have {shape[1]} channels, so they are read as one-hot / class "
            f"probabilities, but hold values in [{lo:g}, {hi:g}], not [0, 1]. Pass class "
            f"indices ({shape[0]}, 1, {', '.join(str(n) for n in shape[2:])}) instead, or "
            "one-hot maps (e.g. monai.transforms.AsDiscrete(to_onehot=C))."
        )
    sums = t.sum(1)  # (B, *S)
    off = (sums - 1.0).abs() > _SUM_TOL
    if bool(off.any()):
        raise DataError(
            f"one-hot targets {shape} must sum to 1 over the {shape[1]} channels at every "
            f"position; some sum to {float(sums[off][0]):g}. Overlapping (multi-label) or empty "
            "channels cannot be read as one class per position: add the background channel or "
            "pass class indices."
        )
    return t.argmax(1)
