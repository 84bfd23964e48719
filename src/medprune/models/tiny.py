"""Tiny plain classifiers for fast tests: each covers one awkward case of the graph engine.

All are < 50k parameters, take ``(B, in_channels, *S)`` with ``S`` = ``(H, W)`` (16..64 px) or
``(D, H, W)`` when ``spatial_dims=3``, and return logits ``(B, num_classes)``.

* ``tiny_cnn``: conv-bn-relu x3, max pool to a fixed 4x4 map, **flatten of a (C, H, W) map** ->
  linear -> relu -> linear (the engine must map one channel to 16 linear inputs);
* ``tiny_cnn_gap``: global average pool -> linear;
* ``tiny_grouped``: grouped conv (``groups=2``) and a depthwise conv;
* ``tiny_groupnorm``: ``GroupNorm(4, 16)`` after the convs;
* ``tiny_prelu``: per-channel ``PReLU(C)`` and a single-slope ``PReLU()``;
* ``tiny_mlp_head``: conv -> adaptive pool to 2x2 -> flatten -> linear -> relu -> linear.

Residual, squeeze-excitation, dense and padded-shortcut nets are in :mod:`.tiny_blocks`,
segmenters in :mod:`.tiny_seg`.
"""

from __future__ import annotations

import torch
from torch import nn

from medprune.models._layers import (
    adaptive_avg_pool,
    adaptive_max_pool,
    batch_norm,
    check_positive,
    check_spatial_dims,
    conv,
    max_pool,
)
from medprune.models.registry import register_model

__all__ = ["TinyCNN", "TinyCNNGap", "TinyGrouped", "TinyGroupNorm", "TinyMLPHead", "TinyPReLU"]


def conv_bn_relu(spatial_dims: int, c_in: int, c_out: int, **conv_kwargs: int) -> nn.Sequential:
    """``conv3x3 (no bias) -> BatchNorm -> ReLU``: ``(B, c_in, *S) -> (B, c_out, *S')``."""
    return nn.Sequential(
        conv(spatial_dims, c_in, c_out, 3, bias=False, **conv_kwargs),
        batch_norm(spatial_dims, c_out),
        nn.ReLU(),
    )


class _Classifier(nn.Module):
    """Checks the common constructor arguments."""

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int) -> None:
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.num_classes = check_positive("num_classes", num_classes)
        self.spatial_dims = check_spatial_dims(spatial_dims)


@register_model("tiny_cnn")
class TinyCNN(_Classifier):
    """conv-bn-relu x3 -> max pool to 4^d -> flatten -> linear -> relu -> linear.

    The flatten keeps the spatial map: feature ``c * 4**d + p`` of ``fc1`` belongs to channel
    ``c`` of ``block3``.

    Args:
        in_channels: input channels ``C`` of ``(B, C, *S)``; ``S`` at least 4 per axis.
        num_classes: logits per sample.
        spatial_dims: 2 or 3.
        hidden: width of the hidden linear layer.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2, hidden: int = 32
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        check_positive("hidden", hidden)
        d = self.spatial_dims
        self.block1 = conv_bn_relu(d, in_channels, 8)
        self.pool1 = max_pool(d, 2)
        self.block2 = conv_bn_relu(d, 8, 16)
        self.block3 = conv_bn_relu(d, 16, 16)
        self.pool = adaptive_max_pool(d, 4)
        self.fc1 = nn.Linear(16 * 4**d, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.block3(self.block2(self.pool1(self.block1(x))))
        x = torch.flatten(self.pool(x), 1)  # (B, 16 * 4**d)
        return self.fc2(self.relu(self.fc1(x)))


@register_model("tiny_cnn_gap")
class TinyCNNGap(_Classifier):
    """conv-bn-relu x3 -> global average pool -> linear: ``(B, C, *S) -> (B, num_classes)``."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.features = nn.Sequential(
            conv_bn_relu(d, in_channels, 8),
            conv_bn_relu(d, 8, 16, stride=2),
            conv_bn_relu(d, 16, 32),
        )
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@register_model("tiny_grouped")
class TinyGrouped(_Classifier):
    """Grouped and depthwise convolutions.

    ``conv 8 -> conv 16 (groups=2) -> depthwise conv 16 (groups=16) -> pointwise conv 16``, each
    followed by BN and ReLU, then global pool -> linear. Pruning the grouped conv must remove
    channels group-consistently; the depthwise conv ties its input and output channels.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.stem = conv_bn_relu(d, in_channels, 8)
        self.grouped = conv_bn_relu(d, 8, 16, groups=2)
        self.depthwise = conv_bn_relu(d, 16, 16, groups=16, stride=2)
        self.pointwise = nn.Sequential(conv(d, 16, 16, 1, bias=False), batch_norm(d, 16), nn.ReLU())
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.pointwise(self.depthwise(self.grouped(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("tiny_groupnorm")
class TinyGroupNorm(_Classifier):
    """conv -> ``GroupNorm(4, 16)`` -> ReLU, twice, then global pool -> linear.

    GroupNorm couples channels in groups of 4: pruning must keep whole groups (or re-group).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.conv1 = conv(d, in_channels, 16, 3)
        self.norm1 = nn.GroupNorm(4, 16)
        self.conv2 = conv(d, 16, 16, 3, stride=2)
        self.norm2 = nn.GroupNorm(4, 16)
        self.relu = nn.ReLU()
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("tiny_prelu")
class TinyPReLU(_Classifier):
    """conv-bn-``PReLU(8)`` (one slope per channel, pruned with the channels), then
    conv-bn-``PReLU()`` (one shared slope, left alone), global pool -> linear."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.conv1 = conv(d, in_channels, 8, 3, bias=False)
        self.bn1 = batch_norm(d, 8)
        self.act1 = nn.PReLU(8)
        self.conv2 = conv(d, 8, 16, 3, bias=False, stride=2)
        self.bn2 = batch_norm(d, 16)
        self.act2 = nn.PReLU()
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("tiny_mlp_head")
class TinyMLPHead(_Classifier):
    """conv-bn-relu x2 -> adaptive average pool to 2^d -> flatten -> linear -> relu -> linear."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2, hidden: int = 16
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        check_positive("hidden", hidden)
        d = self.spatial_dims
        self.features = nn.Sequential(conv_bn_relu(d, in_channels, 8), conv_bn_relu(d, 8, 16))
        self.pool = adaptive_avg_pool(d, 2)
        self.head = nn.Sequential(
            nn.Flatten(1), nn.Linear(16 * 2**d, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        return self.head(self.pool(self.features(x)))
