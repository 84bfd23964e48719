"""CIFAR-style VGG-16 with batch norm, as in HRank / HRankPlus / beta-Rank.

13 conv3x3 (padding 1, with bias) + BN + ReLU with widths
``64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512`` (``M`` = 2x2 max
pool, four of them), then a pool to 1x1 -> flatten (512) -> ``Linear(512, 512)`` ->
``BatchNorm1d(512)`` -> ReLU -> ``Linear(512, num_classes)``.

The reference uses ``AvgPool2d(2)``, which only works at 32x32; here an adaptive average pool to
1x1 takes its place, identical at 32x32 and valid for any input of at least 16 px.
Module names follow the reference (``features.conv0``, ``features.norm0``, ``features.pool2``,
``classifier.linear1``, ...), so per-layer rates index the same layers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from medprune.models._layers import check_positive
from medprune.models.registry import register_model

__all__ = ["VGG16_CFG", "VGG16BN"]

#: Layer widths of VGG-16; ``"M"`` is a 2x2 max pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip


@register_model("vgg16_bn")
class VGG16BN(nn.Module):
    """VGG-16-BN for CIFAR-size inputs: ``(B, in_channels, H, W) -> (B, num_classes)``.

    14.99 M parameters for 3 input channels and 10 classes; 313.5 M MACs at 32x32.

    Args:
        in_channels: input channels (3 for RGB, 1 for grey).
        num_classes: logits per sample.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.num_classes = check_positive("num_classes", num_classes)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = in_channels
        for i, width in enumerate(VGG16_CFG):
            if width == "M":
                layers[f"pool{i}"] = nn.MaxPool2d(kernel_size=2, stride=2)
                continue
            c_out = int(width)
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
            layers[f"norm{i}"] = nn.BatchNorm2d(c_out)
            layers[f"relu{i}"] = nn.ReLU()
            c_in = c_out
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            OrderedDict(
                linear1=nn.Linear(c_in, 512),
                norm1=nn.BatchNorm1d(512),
                relu1=nn.ReLU(),
                linear2=nn.Linear(512, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, num_classes)``; ``H, W >= 16``."""
        x = self.avgpool(self.features(x))  # (B, 512, 1, 1)
        return self.classifier(torch.flatten(x, 1))  # (B, 512) -> (B, num_classes)
