"""Hand-made tiny models and their pruning groups, for criteria tests that need no engine."""

from __future__ import annotations

import torch
from torch import nn

from medprune.graph.group import ActivationSite, ChannelSlice, PruningGroup


class ToyGraph:
    """The two things a criterion reads from a PruningGraph: ``model`` and prunable groups."""

    def __init__(self, model: nn.Module, groups: list[PruningGroup]) -> None:
        self.model = model
        self.groups = [g.bind(model) for g in groups]

    def prunable_groups(self) -> list[PruningGroup]:
        return [g for g in self.groups if g.prunable]


def _idx(n: int) -> torch.Tensor:
    return torch.arange(n).reshape(n, 1)


def conv_group(
    key: str,
    producers: list[str],
    n: int,
    *,
    norms: list[str] = (),  # type: ignore[assignment]
    consumers: list[str] = (),  # type: ignore[assignment]
    bias: bool = False,
) -> PruningGroup:
    slices = []
    sites = []
    for p in producers:
        slices.append(ChannelSlice(p, "weight", 0, _idx(n), "out"))
        if bias:
            slices.append(ChannelSlice(p, "bias", 0, _idx(n), "out"))
        sites.append(ActivationSite(p, torch.arange(n), "producer"))
    for m in norms:
        for t in ("weight", "bias", "running_mean", "running_var"):
            slices.append(ChannelSlice(m, t, 0, _idx(n), "per_channel"))
        sites.append(ActivationSite(m, torch.arange(n), "norm"))
    for c in consumers:
        slices.append(ChannelSlice(c, "weight", 1, _idx(n), "in"))
    return PruningGroup(key, n, tuple(slices), tuple(sites))


class ConvNet(nn.Module):
    """conv1 (c_in->4) - bn1 - relu - conv2 (4->3) - bn2 - relu - pool - fc (3->k)."""

    def __init__(self, c_in: int = 2, k: int = 2, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.conv1 = conv(c_in, 4, 3, padding=1, bias=False)
        self.bn1 = bn(4)
        self.conv2 = conv(4, 3, 3, padding=1, bias=False)
        self.bn2 = bn(3)
        self.fc = nn.Linear(3, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(2).mean(2))


def convnet_graph(model: ConvNet | None = None) -> ToyGraph:
    model = model if model is not None else ConvNet()
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    groups = [
        conv_group("conv1", ["conv1"], 4, norms=["bn1"], consumers=["conv2"]),
        conv_group("conv2", ["conv2"], 3, norms=["bn2"], consumers=["fc"]),
    ]
    return ToyGraph(model, groups)


class ResNet(nn.Module):
    """stem conv0 - bn0 -> (+ conv1 - bn1) -> relu -> inner conv2 - bn2 - relu -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn0(self.conv0(x))
        h = torch.relu(h + self.bn1(self.conv1(torch.relu(h))))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.fc(h.mean((2, 3)))


def resnet_graph() -> ToyGraph:
    model = ResNet().eval()
    groups = [
        conv_group(
            "stream", ["conv0", "conv1"], 4, norms=["bn0", "bn1"], consumers=["conv1", "conv2"]
        ),
        conv_group("conv2", ["conv2"], 3, norms=["bn2"], consumers=["fc"]),
    ]
    return ToyGraph(model, groups)


def batches(
    n_batches: int = 3, b: int = 4, c_in: int = 2, size: int = 6, k: int = 2, seed: int = 0
):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(b, c_in, size, size, generator=gen), torch.randint(0, k, (b,), generator=gen))
        for _ in range(n_batches)
    ]
