"""The AlexNet-style net of class-dependent pruning (Entezari & Saukh 2020), adapted to small
inputs.

The reference (``AlexNet3.py``) is torchvision's AlexNet features (conv widths 64, 192, 384, 256,
256) with a narrow head: adaptive average pool to 1x1 -> Dropout -> ``Linear(256, 8)`` -> ReLU ->
Dropout -> ``Linear(8, 8)`` -> ReLU -> ``Linear(8, num_classes)``. For 32x32 inputs the 11x11
stride-4 first conv becomes a 3x3 stride-1 conv; everything else is kept (5x5 second conv, 3x3
stride-2 max pools), so any input of at least 16 px works.
"""

from __future__ import annotations

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.models._layers import check_positive
from medprune.models.registry import register_model

__all__ = ["AlexNetSmall"]


@register_model("alexnet_small")
class AlexNetSmall(nn.Module):
    """AlexNet-style classifier: ``(B, in_channels, H, W) -> (B, num_classes)``, ``H, W >= 16``.

    Args:
        in_channels: input channels.
        num_classes: logits per sample.
        hidden: width of the two hidden linear layers (8 in the reference).
        dropout: dropout probability before the first two linear layers.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, *, hidden: int = 8, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.num_classes = check_positive("num_classes", num_classes)
        check_positive("hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {dropout!r}.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, num_classes)``."""
        x = self.avgpool(self.features(x))  # (B, 256, 1, 1)
        return self.classifier(torch.flatten(x, 1))
