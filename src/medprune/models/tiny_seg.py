"""Tiny segmenters for fast tests: U-Net concat skips, transposed convs, InstanceNorm and
in-place activations.

All are < 50k parameters and map ``(B, in_channels, *S)`` to logits ``(B, out_channels, *S)``;
``S`` = ``(H, W)`` or ``(D, H, W)`` (``spatial_dims=3``), each size divisible by 4 for the U-Nets.
"""

from __future__ import annotations

import torch
from torch import nn

from medprune.errors import ShapeMismatchError
from medprune.models._layers import (
    check_positive,
    check_spatial_dims,
    conv,
    conv_transpose,
    instance_norm,
    make_norm,
    max_pool,
)
from medprune.models.registry import register_model

__all__ = ["TinyInplace", "TinyInstanceNorm", "TinyUNet", "tiny_unet3d"]


class _Segmenter(nn.Module):
    """Checks the common constructor arguments."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int) -> None:
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.out_channels = check_positive("out_channels", out_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)


def _conv_norm_relu(d: int, c_in: int, c_out: int, norm: str) -> nn.Sequential:
    return nn.Sequential(conv(d, c_in, c_out, 3, bias=False), make_norm(norm, d, c_out), nn.ReLU())


@register_model("tiny_unet")
class TinyUNet(_Segmenter):
    """Two-level U-Net: enc 8 -> pool -> enc 16 -> pool -> bottleneck 32 -> ConvTranspose 16,
    concat enc 16 -> dec 16 -> ConvTranspose 8, concat enc 8 -> dec 8 -> 1x1 conv head.

    The decoder convs take ``[up, skip]`` concatenated: their input channels come from two
    producers (the transposed conv and the encoder block).

    Args:
        in_channels: channels ``C`` of the input ``(B, C, *S)``, each size of ``S`` divisible by 4.
        out_channels: logits channels of the output ``(B, out_channels, *S)``.
        spatial_dims: 2 or 3.
        norm: ``"batch"``, ``"instance"``, ``"instance_affine"``, ``"group"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        *,
        spatial_dims: int = 2,
        norm: str = "batch",
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_dims)
        d = self.spatial_dims
        self.enc1 = _conv_norm_relu(d, in_channels, 8, norm)
        self.enc2 = _conv_norm_relu(d, 8, 16, norm)
        self.pool = max_pool(d, 2)
        self.bottleneck = _conv_norm_relu(d, 16, 32, norm)
        self.up2 = conv_transpose(d, 32, 16)
        self.dec2 = _conv_norm_relu(d, 32, 16, norm)
        self.up1 = conv_transpose(d, 16, 8)
        self.dec1 = _conv_norm_relu(d, 16, 8, norm)
        self.head = conv(d, 8, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, out_channels, *S)``; each size of ``S`` divisible by 4."""
        if any(s % 4 for s in x.shape[2:]):
            raise ShapeMismatchError(
                f"TinyUNet needs spatial sizes divisible by 4; got input shape {tuple(x.shape)}."
            )
        e1 = self.enc1(x)  # (B, 8, *S)
        e2 = self.enc2(self.pool(e1))  # (B, 16, *S/2)
        b = self.bottleneck(self.pool(e2))  # (B, 32, *S/4)
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))  # (B, 32 -> 16, *S/2)
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))  # (B, 16 -> 8, *S)
        return self.head(d1)


@register_model("tiny_unet3d")
def tiny_unet3d(in_channels: int = 1, out_channels: int = 2) -> TinyUNet:
    """:class:`TinyUNet` with ``spatial_dims=3`` and affine InstanceNorm:
    ``(B, C, D, H, W) -> (B, out_channels, D, H, W)``."""
    return TinyUNet(in_channels, out_channels, spatial_dims=3, norm="instance_affine")


@register_model("tiny_instancenorm")
class TinyInstanceNorm(_Segmenter):
    """conv -> non-affine InstanceNorm (MONAI's default, no parameters) -> ReLU -> conv ->
    affine InstanceNorm -> ReLU -> 1x1 conv head: ``(B, C, *S) -> (B, out_channels, *S)``."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_dims)
        d = self.spatial_dims
        self.conv1 = conv(d, in_channels, 8, 3)
        self.norm1 = instance_norm(d, 8, affine=False)
        self.conv2 = conv(d, 8, 16, 3)
        self.norm2 = instance_norm(d, 16, affine=True)
        self.relu = nn.ReLU()
        self.head = conv(d, 16, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, out_channels, *S)``."""
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        return self.head(x)


@register_model("tiny_inplace")
class TinyInplace(_Segmenter):
    """MONAI BasicUNet-style blocks: conv -> affine InstanceNorm -> ``LeakyReLU(0.1,
    inplace=True)``, twice, plus a residual add before a final in-place ReLU and a 1x1 head.

    In-place activations mutate the normalised tensor: hooks that keep a reference to the norm
    output see the activated values. ``(B, C, *S) -> (B, out_channels, *S)``.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_dims)
        d = self.spatial_dims
        self.conv1 = conv(d, in_channels, 8, 3)
        self.norm1 = instance_norm(d, 8, affine=True)
        self.act1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = conv(d, 8, 8, 3)
        self.norm2 = instance_norm(d, 8, affine=True)
        self.act2 = nn.LeakyReLU(0.1, inplace=True)
        self.act3 = nn.ReLU(inplace=True)
        self.head = conv(d, 8, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, out_channels, *S)``."""
        h = self.act1(self.norm1(self.conv1(x)))
        y = self.act2(self.norm2(self.conv2(h)))
        y = y + h
        return self.head(self.act3(y))
