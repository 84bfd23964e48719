"""One tiny model per propagation rule: groups, slices, pins, and the zero-channel invariant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rule_models import X2, ConvBnRelu, keys
from torch import nn

from medprune.errors import ConfigError
from medprune.graph import build_graph, prune_channels


def test_conv_bn_relu_group_slices(compare):
    graph = build_graph(ConvBnRelu(), X2)
    g = graph.group("conv1.out")
    assert g.n_channels == 8 and g.prunable
    found = {(s.module_name, s.tensor_name, s.dim, s.role) for s in g.slices}
    assert ("conv1", "weight", 0, "out") in found
    assert ("conv1", "bias", 0, "out") in found
    assert ("bn1", "running_mean", 0, "per_channel") in found
    assert ("conv2", "weight", 1, "in") in found
    assert [s.kind for s in g.sites] == ["producer", "norm"]
    # input and output channels are pinned
    assert not graph.group("conv1.in").prunable
    assert not graph.group("conv2.out").prunable
    assert graph.prunable_groups() == [g]
    assert graph.group_of("conv1") == [g] and graph.group_of(graph.model.conv1) == [g]
    model, _, plan, _ = compare(ConvBnRelu(), X2)
    assert model.conv1.out_channels == model.bn1.num_features == 8 - len(plan["conv1.out"])
    assert model.conv2.in_channels == model.conv1.out_channels


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        out = self.bn(self.body(x))
        out += x  # in-place residual add
        return self.head(F.relu_(out))


def test_residual_add_couples_producers(compare):
    graph = build_graph(Residual(), X2)
    g = graph.group("stem.out+body.out")
    assert {s.module_name for s in g.members("out", "weight")} == {"stem", "body"}
    assert {s.module_name for s in g.members("in")} == {"body", "head"}
    compare(Residual(), X2)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.c = nn.Conv2d(12, 2, 1)

    def forward(self, x):
        return self.c(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1))


def test_cat_offsets(compare):
    graph = build_graph(Concat(), X2)
    gb = graph.group("b.out")
    (cin,) = gb.members("in")
    assert cin.module_name == "c" and cin.index.reshape(-1).tolist() == [8, 9, 10, 11]
    compare(Concat(), X2, min_groups=2)


class FlattenLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, stride=2)
        self.fc = nn.Linear(6 * 4 * 4, 10)
        self.out = nn.Linear(10, 3)

    def forward(self, x):
        return self.out(F.relu(self.fc(torch.flatten(F.relu(self.conv(x)), 1))))


def test_flatten_into_linear_rows_of_hw(compare):
    graph = build_graph(FlattenLinear(), X2)
    g = graph.group("conv.out")
    (fc_in,) = g.members("in")
    assert fc_in.index.shape == (6, 16)
    assert fc_in.index[1].tolist() == list(range(16, 32))
    assert graph.group("fc.out").prunable
    model, _, plan, _ = compare(FlattenLinear(), X2, min_groups=2)
    assert model.fc.in_features == (6 - len(plan["conv.out"])) * 16


class Depthwise(nn.Module):
    def __init__(self, groups: int = 8) -> None:
        super().__init__()
        self.pw1 = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=groups)
        self.pw2 = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.pw2(F.relu(self.dw(F.relu(self.pw1(x)))))


def test_depthwise_couples_in_and_out(compare):
    graph = build_graph(Depthwise(), X2)
    g = (
        graph.group("dw.out+pw1.out")
        if "dw.out+pw1.out" in keys(graph)
        else graph.group("pw1.out+dw.out")
    )
    assert {s.module_name for s in g.members("out", "weight")} == {"pw1", "dw"}
    model, _, plan, _ = compare(Depthwise(), X2)
    (removed,) = plan.values()
    assert model.dw.groups == model.dw.in_channels == model.dw.out_channels == 8 - len(removed)


@pytest.mark.parametrize("transposed", [False, True])
def test_grouped_conv_prunes_whole_groups(compare, transposed):
    model = Grouped(transposed)
    graph = build_graph(model, X2)
    (g,) = [g for g in graph.prunable_groups() if "pw1" in g.key]
    assert g.n_channels == 2  # one removable unit per conv group of 4 channels
    assert {s.index.shape[1] for s in g.members("out", "weight")} == {4}
    pruned, _, plan, _ = compare(Grouped(transposed), X2)
    assert pruned.gc.groups == 2 - len(plan[g.key])
    assert pruned.gc.in_channels == pruned.gc.out_channels == 4 * pruned.gc.groups


class Grouped(nn.Module):
    def __init__(self, transposed: bool) -> None:
        super().__init__()
        self.pw1 = nn.Conv2d(3, 8, 1)
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.gc = conv(8, 8, 3, padding=1, groups=2)
        self.pw2 = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.pw2(F.relu(self.gc(F.relu(self.pw1(x)))))


class GroupNormNet(nn.Module):
    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8, affine=affine)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(F.silu(self.gn(self.conv(x))))


@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_whole_groups(compare, affine):
    graph = build_graph(GroupNormNet(affine), X2)
    g = graph.group("conv.out")
    assert g.channel_multiple == 2 and g.min_channels == 2
    assert g.channel_blocks().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ConfigError, match="whole blocks of 2"):
        prune_channels(graph.model, graph, {"conv.out": [0]})
    model, _, plan, _ = compare(GroupNormNet(affine), X2)
    n = 8 - len(plan["conv.out"])
    assert model.gn.num_channels == n and model.gn.num_groups == n // 2


class InstanceNormNet(nn.Module):
    def __init__(self, affine: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.InstanceNorm2d(8, affine=affine)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.act(self.norm(self.conv(x))))


@pytest.mark.parametrize("affine", [True, False])
def test_instancenorm_with_inplace_leaky_relu(compare, affine):
    model, _, plan, _ = compare(InstanceNormNet(affine), X2)
    assert model.norm.num_features == 8 - len(plan["conv.out"])


class PReLUNet(nn.Module):
    def __init__(self, slopes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(slopes)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.act(self.conv(x)))


@pytest.mark.parametrize("slopes", [1, 8])
def test_prelu(compare, slopes):
    graph = build_graph(PReLUNet(slopes), X2)
    prelu_slices = [s for s in graph.group("conv.out").slices if s.module_name == "act"]
    assert len(prelu_slices) == (1 if slopes == 8 else 0)
    model, _, plan, _ = compare(PReLUNet(slopes), X2)
    expected = 8 - len(plan["conv.out"]) if slopes == 8 else 1
    assert model.act.num_parameters == model.act.weight.numel() == expected


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return self.head(x * gate)


def test_se_gate_couples_with_main_map(compare):
    graph = build_graph(SqueezeExcite(), X2)
    g = graph.group("conv.out+fc2.out")
    assert g.zero_exact  # sigmoid(0) = 0.5 is multiplied by a zero channel
    compare(SqueezeExcite(), X2, min_groups=2)
