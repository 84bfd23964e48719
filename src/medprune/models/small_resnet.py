"""A small ResNet-18-like classifier for MedMNIST-size inputs (28x28 to 128x128).

Stem conv3x3 -> ``base_width`` + BN + ReLU (stride ``stem_stride``, no max pool); four stages of
``blocks[i]`` basic blocks with widths ``base_width * (1, 2, 4, 8)`` and strides 1, 2, 2, 2,
projection (1x1 conv + BN) shortcuts where the shape changes; global average pool -> linear.
Used by ``medprune demo`` and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

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

__all__ = ["SmallResNet"]


@register_model("small_resnet")
class SmallResNet(nn.Module):
    """ResNet-18 layout at a quarter of the width: ``(B, in_channels, *S) -> (B, num_classes)``.

    0.70 M parameters with the defaults (2D, base width 16, blocks ``(2, 2, 2, 2)``).

    Args:
        in_channels: input channels (1 for grey MedMNIST, 3 for RGB).
        num_classes: logits per sample.
        spatial_dims: 2 or 3.
        base_width: channels of the first stage; doubled at each later stage.
        blocks: basic blocks per stage (four stages).
        stem_stride: stride of the stem conv (2 halves the cost on 128x128 inputs).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        spatial_dims: int = 2,
        base_width: int = 16,
        blocks: Sequence[int] = (2, 2, 2, 2),
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.num_classes = check_positive("num_classes", num_classes)
        self.spatial_dims = d = check_spatial_dims(spatial_dims)
        check_positive("base_width", base_width)
        check_positive("stem_stride", stem_stride)
        blocks = tuple(blocks)
        if len(blocks) != 4 or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks
        ):
            raise ConfigError(f"blocks must be four positive integers; got {blocks!r}.")
        self.conv1 = conv(d, in_channels, base_width, 3, stride=stem_stride, bias=False)
        self.bn1 = batch_norm(d, base_width)
        self.relu = nn.ReLU()
        c_in = base_width
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, 2), strict=True)):
            width = base_width * 2**i
            stage = [BasicBlock(d, c_in, width, stride, "B")]  # (c_in -> width, stride)
            stage += [BasicBlock(d, width, width, 1, "B") for _ in range(n - 1)]
            c_in = width
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = adaptive_avg_pool(d, 1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)``."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w, *S / stem_stride)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w, *S')
        return self.fc(torch.flatten(self.avgpool(x), 1))
