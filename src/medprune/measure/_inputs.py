"""Shared helpers: validate example inputs, run the model safely, place it on a device.

Every measurement runs the model in eval mode under ``torch.no_grad`` (or ``inference_mode``) and
restores each module's ``training`` flag afterwards, so measuring never changes the user's model.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError, ShapeMismatchError
from medprune.measure.input_size import input_size_error
from medprune.typing import ExampleInputs

InputTuple = tuple[torch.Tensor, ...]


def as_input_tuple(example_inputs: ExampleInputs) -> InputTuple:
    """Normalise ``example_inputs`` to a non-empty tuple of batched tensors.

    Args:
        example_inputs: one tensor ``(B, C, *S)`` or a tuple/list of such tensors (positional
            arguments of ``model.forward``).

    Returns:
        The inputs as a tuple of tensors.

    Raises:
        ConfigError: the value is not a tensor or a tuple of tensors, or a tensor is not batched.
    """
    if isinstance(example_inputs, torch.Tensor):
        inputs: InputTuple = (example_inputs,)
    elif isinstance(example_inputs, (tuple, list)) and example_inputs:
        inputs = tuple(example_inputs)
    else:
        raise ConfigError(
            "example_inputs must be a tensor (B, C, *S) or a non-empty tuple of tensors; "
            f"got {type(example_inputs).__name__}."
        )
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor):
            raise ConfigError(
                f"example_inputs[{i}] must be a torch.Tensor; got {type(t).__name__}. "
                "Pass a tensor (B, C, *S) or a tuple of tensors."
            )
        if t.dim() < 1 or t.shape[0] < 1:
            raise ShapeMismatchError(
                f"example_inputs[{i}] must have a batch dimension of size >= 1 (B, C, *S); "
                f"got shape {tuple(t.shape)}."
            )
    return inputs


def input_shapes(inputs: InputTuple) -> tuple[tuple[int, ...], ...]:
    """The shape of every input, as plain tuples of ints."""
    return tuple(tuple(int(s) for s in t.shape) for t in inputs)


def batch_size_of(inputs: InputTuple) -> int:
    """Batch size (dim 0) of the first input."""
    return int(inputs[0].shape[0])


def repeat_batch(inputs: InputTuple, batch_size: int | None) -> InputTuple:
    """Repeat the examples along dim 0 (cyclically) to reach ``batch_size`` rows.

    Args:
        inputs: tensors ``(B, C, *S)``.
        batch_size: wanted batch size, or None to keep the inputs as they are.

    Returns:
        Tensors ``(batch_size, C, *S)``: rows ``0..B-1`` of the example, repeated.
    """
    if batch_size is None:
        return inputs
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int or None; got {batch_size!r}.")
    out = []
    for t in inputs:
        idx = torch.arange(batch_size, device=t.device) % t.shape[0]  # (batch_size,)
        out.append(t.index_select(0, idx).contiguous())  # (batch_size, C, *S)
    return tuple(out)


def check_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``: CUDA when present, else
    the CPU) and check that it exists on this machine.

    Raises:
        ConfigError: a name torch does not know (``"gpu"``), or CUDA on a machine without it.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}."
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu'.")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}.")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for a model without state)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def place(
    model: nn.Module, inputs: InputTuple, device: str | torch.device
) -> tuple[nn.Module, InputTuple]:
    """Model and inputs on ``device``; the model is deep-copied rather than moved in place."""
    dev = check_device(device)
    current = model_device(model)
    if current.type != dev.type or (dev.index is not None and current.index != dev.index):
        model = copy.deepcopy(model).to(dev)
    return model, tuple(t.to(dev) for t in inputs)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each module's ``training`` flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return name, m
    return None


def forward_checked(model: nn.Module, inputs: InputTuple) -> Any:
    """Run ``model(*inputs)``; a shape failure becomes a ShapeMismatchError naming the shapes.

    Raises:
        ShapeMismatchError: the model raised a RuntimeError or ValueError on these inputs. An
            input too small for the model's downsampling gets one error naming the smallest size
            that runs (:func:`medprune.measure.input_size.input_size_error`, no chained
            traceback); other failures (wrong rank, channel count) chain the original error.
    """
    try:
        return model(*inputs)
    except (RuntimeError, ValueError) as e:
        size_error = input_size_error(model, inputs, e)
        if size_error is not None:
            raise size_error from None
        shapes = ", ".join(str(s) for s in input_shapes(inputs))
        hint = "Pass inputs shaped (B, C, *S) as the model expects."
        found = _first_conv(model)
        if found is not None:
            name, conv = found
            n = len(conv.kernel_size)
            axes = "(B, C, H, W)" if n == 2 else "(B, C, D, H, W)" if n == 3 else "(B, C, L)"
            hint = (
                f"The first convolution {name!r} is {type(conv).__name__} with "
                f"in_channels={conv.in_channels}, so inputs should be {axes}."
            )
        raise ShapeMismatchError(
            f"{type(model).__name__} failed on example_inputs of shape {shapes}: {e}. {hint}"
        ) from e
