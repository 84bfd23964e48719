"""Example inputs for the built-in models, for tests, tracing and measurement."""

from __future__ import annotations

import torch
from torch import nn

from medprune.errors import ConfigError

__all__ = ["example_input"]


def example_input(
    model: nn.Module,
    *,
    batch_size: int = 2,
    size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A random float32 input ``(batch_size, in_channels, *S)`` for a built-in model.

    Reads the ``in_channels`` and ``spatial_dims`` attributes that every built-in model sets
    (``spatial_dims`` defaults to 2 when absent).

    Args:
        model: a model from :func:`~medprune.models.create_model` (or any module with an
            ``in_channels`` attribute).
        batch_size: ``B``.
        size: side of each spatial axis; default 32 in 2D and 16 in 3D (both divisible by 16,
            as the U-Nets need).
        generator: optional ``torch.Generator`` for a reproducible draw.

    Returns:
        ``(B, C, H, W)`` or ``(B, C, D, H, W)`` standard-normal tensor.
    """
    in_channels = getattr(model, "in_channels", None)
    if not isinstance(in_channels, int):
        raise ConfigError(
            f"{type(model).__name__} has no integer 'in_channels' attribute; build the example "
            f"input yourself as torch.randn(B, C, *S)."
        )
    spatial_dims = getattr(model, "spatial_dims", 2)
    if size is None:
        size = 32 if spatial_dims == 2 else 16
    shape = (batch_size, in_channels, *([size] * spatial_dims))
    return torch.randn(shape, generator=generator)
