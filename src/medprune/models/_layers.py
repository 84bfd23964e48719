"""Dimension-generic layer constructors shared by the built-in models.

``conv(spatial_dims, ...)`` returns ``nn.Conv2d`` or ``nn.Conv3d`` and so on, so that one model
definition serves 2D ``(B, C, H, W)`` and 3D ``(B, C, D, H, W)`` inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError

__all__ = [
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "batch_norm",
    "check_positive",
    "check_spatial_dims",
    "conv",
    "conv_transpose",
    "instance_norm",
    "make_norm",
    "max_pool",
    "strided_subsample",
]

_NORMS = ("batch", "instance", "instance_affine", "group", "none")


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise :class:`ConfigError`."""
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ConfigError(f"spatial_dims must be 2 or 3; got {spatial_dims!r}.")
    return int(spatial_dims)


def check_positive(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive int, else raise :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    return value


def conv(
    spatial_dims: int, c_in: int, c_out: int, kernel_size: int = 3, **kwargs: Any
) -> nn.Module:
    """``nn.Conv2d`` / ``nn.Conv3d``; ``padding`` defaults to ``kernel_size // 2`` (same size)."""
    kwargs.setdefault("padding", kernel_size // 2)
    cls = nn.Conv2d if check_spatial_dims(spatial_dims) == 2 else nn.Conv3d
    return cls(c_in, c_out, kernel_size, **kwargs)


def conv_transpose(
    spatial_dims: int, c_in: int, c_out: int, kernel_size: int = 2, stride: int = 2, **kwargs: Any
) -> nn.Module:
    """``nn.ConvTranspose2d`` / ``3d``; the default doubles each spatial size."""
    cls = nn.ConvTranspose2d if check_spatial_dims(spatial_dims) == 2 else nn.ConvTranspose3d
    return cls(c_in, c_out, kernel_size, stride=stride, **kwargs)


def batch_norm(spatial_dims: int, channels: int) -> nn.Module:
    """``nn.BatchNorm2d`` / ``nn.BatchNorm3d``."""
    cls = nn.BatchNorm2d if check_spatial_dims(spatial_dims) == 2 else nn.BatchNorm3d
    return cls(channels)


def instance_norm(spatial_dims: int, channels: int, *, affine: bool) -> nn.Module:
    """``nn.InstanceNorm2d`` / ``3d`` (``affine=False`` is MONAI's default ``"instance"`` norm)."""
    cls = nn.InstanceNorm2d if check_spatial_dims(spatial_dims) == 2 else nn.InstanceNorm3d
    return cls(channels, affine=affine)


def make_norm(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation layer by name.

    Args:
        norm: ``"batch"``, ``"instance"`` (non-affine), ``"instance_affine"``, ``"group"``
            (``GroupNorm(min(8, channels), channels)`` when that divides, else 1 group) or
            ``"none"`` (identity).
        spatial_dims: 2 or 3.
        channels: number of channels ``C`` of the ``(B, C, *S)`` input.
    """
    if norm == "batch":
        return batch_norm(spatial_dims, channels)
    if norm == "instance":
        return instance_norm(spatial_dims, channels, affine=False)
    if norm == "instance_affine":
        return instance_norm(spatial_dims, channels, affine=True)
    if norm == "group":
        groups = 8 if channels % 8 == 0 else 1
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"norm must be one of {', '.join(_NORMS)}; got {norm!r}.")


def max_pool(spatial_dims: int, kernel_size: int = 2, **kwargs: Any) -> nn.Module:
    """``nn.MaxPool2d`` / ``nn.MaxPool3d``."""
    cls = nn.MaxPool2d if check_spatial_dims(spatial_dims) == 2 else nn.MaxPool3d
    return cls(kernel_size, **kwargs)


def adaptive_avg_pool(spatial_dims: int, output_size: int = 1) -> nn.Module:
    """``nn.AdaptiveAvgPool2d`` / ``3d`` to ``output_size`` per spatial axis."""
    cls = nn.AdaptiveAvgPool2d if check_spatial_dims(spatial_dims) == 2 else nn.AdaptiveAvgPool3d
    return cls(output_size)


def adaptive_max_pool(spatial_dims: int, output_size: int = 1) -> nn.Module:
    """``nn.AdaptiveMaxPool2d`` / ``3d`` to ``output_size`` per spatial axis."""
    cls = nn.AdaptiveMaxPool2d if check_spatial_dims(spatial_dims) == 2 else nn.AdaptiveMaxPool3d
    return cls(output_size)


def strided_subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Keep every ``stride``-th position along each spatial axis: ``(B, C, *S) -> (B, C, *S')``."""
    if stride == 1:
        return x
    index = (slice(None), slice(None)) + (slice(None, None, stride),) * (x.dim() - 2)
    return x[index]
