"""Tiny classifiers built from coupled blocks: residual adds, a zero-padded shortcut,
squeeze-excitation and dense concatenation.

All are < 50k parameters and map ``(B, in_channels, *S)`` to logits ``(B, num_classes)``
(``S`` = ``(H, W)`` or ``(D, H, W)`` with ``spatial_dims=3``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from medprune.models._layers import adaptive_avg_pool, batch_norm, conv
from medprune.models.blocks import BasicBlock
from medprune.models.registry import register_model
from medprune.models.tiny import _Classifier, conv_bn_relu

__all__ = [
    "DenseLayer",
    "SqueezeExcitation",
    "TinyDense",
    "TinyPadShortcut",
    "TinyResNet",
    "TinySE",
]


class _TwoBlockResNet(_Classifier):
    """stem conv 8 -> block 8->8 -> block 8->16 stride 2 -> global pool -> linear, with the
    blocks' shortcut option set by the subclass (``_shortcut``)."""

    _shortcut: ClassVar[str]

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.stem = conv_bn_relu(d, in_channels, 8)
        self.layer1 = BasicBlock(d, 8, 8, 1, shortcut=self._shortcut)
        self.layer2 = BasicBlock(d, 8, 16, 2, shortcut=self._shortcut)
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("tiny_resnet")
class TinyResNet(_TwoBlockResNet):
    """stem conv 8 -> block 8->8 (identity shortcut) -> block 8->16 stride 2 (1x1 conv
    projection shortcut) -> global pool -> linear."""

    _shortcut = "B"


@register_model("tiny_pad_shortcut")
class TinyPadShortcut(_TwoBlockResNet):
    """CIFAR option-A shortcuts: stem conv 8 -> block 8->8 (identity) -> block 8->16 stride 2
    whose shortcut subsamples and zero-pads 4 channels each side with ``F.pad`` -> pool -> linear.

    Output channels 0-3 and 12-15 of the second block receive no shortcut input.
    """

    _shortcut = "A"


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(mean_S(x)))))`` with ``nn.Linear`` layers (as MONAI's
    ``ChannelSELayer``): ``(B, C, *S) -> (B, C, *S)``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, C, *S)``."""
        b, c = x.shape[:2]
        s = x.mean(dim=tuple(range(2, x.dim())))  # (B, C)
        s = self.gate(self.fc2(self.relu(self.fc1(s))))  # (B, C)
        return x * s.view(b, c, *([1] * (x.dim() - 2)))  # broadcast over S


@register_model("tiny_se")
class TinySE(_Classifier):
    """conv-bn-relu 16 -> squeeze-excitation (16 -> 4 -> 16) -> conv-bn-relu 16 -> pool -> linear.

    The SE gate's ``fc2`` output and ``fc1`` input are coupled to the channels it scales.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.block1 = conv_bn_relu(d, in_channels, 16)
        self.se = SqueezeExcitation(16, reduction=4)
        self.block2 = conv_bn_relu(d, 16, 16, stride=2)
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.block2(self.se(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class DenseLayer(nn.Module):
    """Pre-activation ``BN-ReLU-conv3x3`` whose ``growth`` new channels are concatenated to its
    input: ``(B, C, *S) -> (B, C + growth, *S)``."""

    def __init__(self, spatial_dims: int, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn = batch_norm(spatial_dims, c_in)
        self.relu = nn.ReLU()
        self.conv = conv(spatial_dims, c_in, growth, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, C + growth, *S)``."""
        return torch.cat([x, self.conv(self.relu(self.bn(x)))], dim=1)


@register_model("tiny_dense")
class TinyDense(_Classifier):
    """DenseNet-style: stem conv 8 -> dense layer (+4) -> dense layer (+4) -> transition
    BN-ReLU-conv1x1 16->8 + avg pool -> BN-ReLU -> global pool -> linear.

    Each stem channel feeds every later layer through the concatenations.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, *, spatial_dims: int = 2, growth: int = 4
    ) -> None:
        super().__init__(in_channels, num_classes, spatial_dims)
        d = self.spatial_dims
        self.stem = conv(d, in_channels, 8, 3, bias=False)
        self.dense1 = DenseLayer(d, 8, growth)
        self.dense2 = DenseLayer(d, 8 + growth, growth)
        c = 8 + 2 * growth
        self.transition = nn.Sequential(
            batch_norm(d, c), nn.ReLU(), conv(d, c, 8, 1, bias=False), adaptive_avg_pool(d, 4)
        )
        self.norm = batch_norm(d, 8)
        self.relu = nn.ReLU()
        self.pool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.transition(self.dense2(self.dense1(self.stem(x))))
        x = self.relu(self.norm(x))
        return self.fc(torch.flatten(self.pool(x), 1))
