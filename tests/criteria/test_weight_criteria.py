"""Weight-only criteria against hand-computed values and independent NumPy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from criteria_toys import ToyGraph, conv_group, convnet_graph, resnet_graph
from torch import nn

from medprune.criteria import get_criterion
from medprune.errors import ConfigError


def _single_conv(weight: torch.Tensor) -> ToyGraph:
    n, c_in = weight.shape[:2]
    conv = nn.Conv2d(c_in, n, weight.shape[2], bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    model = nn.Sequential()
    model.add_module("conv", conv)
    return ToyGraph(model, [conv_group("conv", ["conv"], n)])


def test_l1_l2_hand_computed():
    # filter k is (k+1) * [1, -1, 1, -1] (fan 4): L1 = 4(k+1), L2 = 2(k+1)
    w = torch.tensor([1.0, -1.0, 1.0, -1.0]).reshape(1, 4, 1, 1) * torch.arange(1, 4).reshape(
        3, 1, 1, 1
    )
    g = _single_conv(w)
    assert get_criterion("l1")(g)["conv"].tolist() == [4.0, 8.0, 12.0]
    assert get_criterion("l2")(g)["conv"].tolist() == pytest.approx([2.0, 4.0, 6.0])


def test_l1_matches_numpy_on_random_conv():
    g = convnet_graph()
    w = g.model.conv1.weight.detach().numpy()
    expected = np.abs(w).reshape(w.shape[0], -1).sum(1)
    np.testing.assert_allclose(get_criterion("l1")(g)["conv1"].numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("distance", ["l2", "l1", "cos"])
def test_fpgm_matches_numpy(distance):
    g = convnet_graph()
    w = g.model.conv1.weight.detach().double().numpy().reshape(4, -1)
    n = w.shape[0]
    expected = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if distance == "l2":
                expected[i] += np.sqrt(((w[i] - w[j]) ** 2).sum())
            elif distance == "l1":
                expected[i] += np.abs(w[i] - w[j]).sum()
            elif i != j:
                cos = w[i] @ w[j] / (np.linalg.norm(w[i]) * np.linalg.norm(w[j]))
                expected[i] += 1.0 - cos
    got = get_criterion("fpgm", distance=distance)(g)["conv1"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_fpgm_hand_computed():
    # 1x1 filters on two input channels: [1,0], [0,1], [1,1], [3,0]
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]]).reshape(4, 2, 1, 1)
    g = _single_conv(w)
    r2 = math.sqrt(2)
    l2 = get_criterion("fpgm", distance="l2")(g)["conv"].tolist()
    r5, r10 = math.sqrt(5), math.sqrt(10)
    assert l2 == pytest.approx([r2 + 3, r2 + 1 + r10, 2 + r5, 2 + r10 + r5], abs=1e-5)
    cos = get_criterion("fpgm", distance="cos")(g)["conv"].tolist()
    a = 1 - 1 / r2  # cos distance between [1,0] and [1,1]
    assert cos == pytest.approx([1 + a + 0, 1 + a + 1, a + a + a, 0 + 1 + a], abs=1e-6)


def test_fpgm_mix_ranks_small_norm_filters_lowest():
    # norm step removes the smallest-norm filter; the rest are ranked by distance among themselves
    w = torch.tensor([[0.1, 0.0], [5.0, 5.0], [5.0, 6.0], [6.0, 5.0]]).reshape(4, 2, 1, 1)
    g = _single_conv(w)
    s = get_criterion("fpgm", norm_fraction=0.25)(g)["conv"]
    assert int(s.argmin()) == 0
    plain = get_criterion("fpgm")(g)["conv"]
    # without the mix, filter 0 is far from the others and is not the least important
    assert int(plain.argmin()) != 0
    # among filters 1..3, [5,5] is nearest the others (distance sums 2, 1+sqrt2, 1+sqrt2)
    assert int(s[1:].argmin()) + 1 == 1
    assert (s[1:] > s[0]).all()


def test_bn_scale_reads_gamma_and_falls_back():
    g = convnet_graph()
    s = get_criterion("bn_scale")(g)
    assert torch.equal(s["conv1"], g.model.bn1.weight.detach().abs())
    no_norm = _single_conv(torch.randn(3, 2, 3, 3))
    l1 = get_criterion("l1")(no_norm)["conv"]
    assert torch.allclose(get_criterion("bn_scale")(no_norm)["conv"], l1)
    with pytest.raises(ConfigError, match="no affine norm"):
        get_criterion("bn_scale", fallback="error")(no_norm)


def test_random_is_seeded_and_per_group():
    g = convnet_graph()
    a = get_criterion("random", seed=3)(g)
    b = get_criterion("random", seed=3)(g)
    c = get_criterion("random", seed=4)(g)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1"], c["conv1"])
    assert all(((v >= 0) & (v < 1)).all() for v in a.values())


def test_coupled_group_combines_normalised_members():
    g = resnet_graph()
    w0 = g.model.conv0.weight.detach().abs().flatten(1).sum(1)
    w1 = g.model.conv1.weight.detach().abs().flatten(1).sum(1)
    got = get_criterion("l1")(g)["stream"]
    expected = (w0 / w0.mean() + w1 / w1.mean()) / 2
    torch.testing.assert_close(got, expected)
    got_max = get_criterion("l1", coupling_norm="none", coupling_reduce="max")(g)["stream"]
    torch.testing.assert_close(got_max, torch.maximum(w0, w1))
    got_prod = get_criterion("l1", coupling_norm="max", coupling_reduce="prod")(g)["stream"]
    torch.testing.assert_close(got_prod, (w0 / w0.max()) * (w1 / w1.max()))


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="Did you mean 'taylor'"):
        get_criterion("talyor")
    with pytest.raises(ConfigError, match="distance must be one of"):
        get_criterion("fpgm", distance="l3")
    with pytest.raises(ConfigError, match="coupling_reduce"):
        get_criterion("l1", coupling_reduce="median")
    with pytest.raises(ConfigError, match="invalid arguments"):
        get_criterion("l2", p=3)
