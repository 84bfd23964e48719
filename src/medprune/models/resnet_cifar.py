"""CIFAR-style ResNet-56 and ResNet-110 (He et al. 2016), as used by HRank and beta-Rank.

Stem conv3x3 -> 16 (no bias) + BN + ReLU; three stages of ``n`` basic blocks (``n`` = 9 for
ResNet-56, 18 for ResNet-110) with widths 16 / 32 / 64, the first block of stages 2 and 3 with
stride 2; global average pool -> ``Linear(64, num_classes)``. Depth = ``6 n + 2``.

Shortcut ``"A"`` (the papers' choice) is parameter-free: subsample ``[:, :, ::2, ::2]`` then
zero-pad ``planes // 4`` channels on each side with ``F.pad``. Shortcut ``"B"`` is a 1x1 conv + BN
projection where the shape changes.
"""

from __future__ import annotations

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.models._layers import (
    adaptive_avg_pool,
    batch_norm,
    check_positive,
    check_spatial_dims,
    conv,
)
from medprune.models.blocks import BasicBlock
from medprune.models.registry import register_model

__all__ = ["CifarResNet", "resnet56", "resnet110"]


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth ``6 n + 2``: ``(B, in_channels, *S) -> (B, num_classes)``.

    Args:
        depth: ``6 n + 2`` (20, 32, 44, 56, 110, ...).
        in_channels: input channels.
        num_classes: logits per sample.
        shortcut: ``"A"`` (zero-pad, no parameters) or ``"B"`` (1x1 conv projection).
        spatial_dims: 2 (the papers) or 3.
    """

    def __init__(
        self,
        depth: int = 56,
        in_channels: int = 3,
        num_classes: int = 10,
        *,
        shortcut: str = "A",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 (20, 56, 110, ...); got {depth!r}.")
        if shortcut not in ("A", "B"):
            raise ConfigError(
                f"shortcut must be 'A' (zero-pad) or 'B' (projection); got {shortcut!r}."
            )
        self.in_channels = check_positive("in_channels", in_channels)
        self.num_classes = check_positive("num_classes", num_classes)
        self.spatial_dims = d = check_spatial_dims(spatial_dims)
        n = (depth - 2) // 6
        self.conv1 = conv(d, in_channels, 16, 3, bias=False)
        self.bn1 = batch_norm(d, 16)
        self.relu = nn.ReLU()
        c_in = 16
        stages = []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(d, c_in, width, stride if b == 0 else 1, shortcut))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, *S)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, *S/4)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet56")
def resnet56(
    in_channels: int = 3, num_classes: int = 10, *, shortcut: str = "A", spatial_dims: int = 2
) -> CifarResNet:
    """ResNet-56 (0.853 M parameters at 10 classes with shortcut A)."""
    return CifarResNet(56, in_channels, num_classes, shortcut=shortcut, spatial_dims=spatial_dims)


@register_model("resnet110")
def resnet110(
    in_channels: int = 3, num_classes: int = 10, *, shortcut: str = "A", spatial_dims: int = 2
) -> CifarResNet:
    """ResNet-110 (1.73 M parameters at 10 classes with shortcut A)."""
    return CifarResNet(110, in_channels, num_classes, shortcut=shortcut, spatial_dims=spatial_dims)
