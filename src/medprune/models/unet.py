"""A plain U-Net (Ronneberger et al. 2015) with concatenated skips, 2D or 3D.

``depth`` down-sampling steps. Level ``i`` has ``base_channels * 2**i`` channels; each level is
two ``conv3x3 -> norm -> ReLU``; down-sampling is a 2x max pool, up-sampling a 2x transposed conv
that halves the channels, followed by concatenation with the encoder output of the same level.
A 1x1 conv maps to ``out_channels`` logits.
"""

from __future__ import annotations

import torch
from torch import nn

from medprune.errors import ConfigError, ShapeMismatchError
from medprune.models._layers import (
    check_positive,
    check_spatial_dims,
    conv,
    conv_transpose,
    make_norm,
    max_pool,
)
from medprune.models.registry import register_model

__all__ = ["DoubleConv", "UNet", "unet3d"]

_UNET_NORMS = ("batch", "instance", "instance_affine", "group", "none")


class DoubleConv(nn.Sequential):
    """``(conv3x3 -> norm -> ReLU) x 2``: ``(B, c_in, *S) -> (B, c_out, *S)``.

    The convs have a bias only without normalisation (a bias before a norm is cancelled).
    """

    def __init__(self, spatial_dims: int, c_in: int, c_out: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            conv(spatial_dims, c_in, c_out, 3, bias=bias),
            make_norm(norm, spatial_dims, c_out),
            nn.ReLU(),
            conv(spatial_dims, c_out, c_out, 3, bias=bias),
            make_norm(norm, spatial_dims, c_out),
            nn.ReLU(),
        )


@register_model("unet")
class UNet(nn.Module):
    """Plain U-Net: ``(B, in_channels, *S) -> (B, out_channels, *S)``.

    Every size of ``S`` must be divisible by ``2**depth``. With the defaults (2D, depth 4,
    32 base channels) it has 7.8 M parameters.

    Args:
        in_channels: input channels.
        out_channels: output logits channels (2 for binary segmentation).
        spatial_dims: 2 or 3.
        depth: number of 2x down-sampling steps (>= 1).
        base_channels: channels of the first level; level ``i`` has ``base_channels * 2**i``.
        norm: ``"batch"``, ``"instance"`` (non-affine, MONAI's default), ``"instance_affine"``,
            ``"group"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        *,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.out_channels = check_positive("out_channels", out_channels)
        self.spatial_dims = d = check_spatial_dims(spatial_dims)
        self.depth = check_positive("depth", depth)
        check_positive("base_channels", base_channels)
        if norm not in _UNET_NORMS:
            raise ConfigError(f"norm must be one of {', '.join(_UNET_NORMS)}; got {norm!r}.")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList([DoubleConv(d, in_channels, widths[0], norm)])
        self.encoders.extend(
            DoubleConv(d, widths[i - 1], widths[i], norm) for i in range(1, depth + 1)
        )
        self.pool = max_pool(d, 2)
        self.ups = nn.ModuleList(
            conv_transpose(d, widths[i], widths[i - 1]) for i in range(depth, 0, -1)
        )
        self.decoders = nn.ModuleList(
            DoubleConv(d, 2 * widths[i - 1], widths[i - 1], norm) for i in range(depth, 0, -1)
        )
        self.head = conv(d, widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, out_channels, *S)``; each size of ``S`` divisible by ``2**depth``."""
        factor = 2**self.depth
        if any(s % factor for s in x.shape[2:]):
            raise ShapeMismatchError(
                f"UNet(depth={self.depth}) needs spatial sizes divisible by {factor}; got input "
                f"shape {tuple(x.shape)}. Resize or pad the input, or lower depth."
            )
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(self.pool(x) if i else x)  # (B, widths[i], *S / 2**i)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, decoder in zip(self.ups, self.decoders, strict=True):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))  # (B, 2w -> w, *S')
        return self.head(x)


@register_model("unet3d")
def unet3d(
    in_channels: int = 1,
    out_channels: int = 2,
    *,
    depth: int = 4,
    base_channels: int = 32,
    norm: str = "batch",
) -> UNet:
    """:class:`UNet` with ``spatial_dims=3``: ``(B, C, D, H, W) -> (B, out_channels, D, H, W)``."""
    return UNet(
        in_channels,
        out_channels,
        spatial_dims=3,
        depth=depth,
        base_channels=base_channels,
        norm=norm,
    )
