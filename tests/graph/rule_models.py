"""Tiny models and helpers shared by the per-rule engine tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medprune.graph import PruningGraph, PruningGroup

X2 = torch.randn(2, 3, 8, 8)


def keys(graph: PruningGraph) -> dict[str, PruningGroup]:
    """The graph's groups by key."""
    return {g.key: g for g in graph.groups}


class ConvBnRelu(nn.Module):
    """conv1 (3->8) -> bn1 -> relu -> conv2 (8->4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn1(self.conv1(x))))
