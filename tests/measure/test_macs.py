"""MACs of single layers against the closed-form formula, and per-module breakdowns."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medprune.measure import count_macs, macs_by_module


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_formula(
    batch: int,
    c_in: int,
    c_out: int,
    spatial: tuple[int, ...],
    k: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> int:
    """B * prod(S_out) * C_out * C_in/groups * prod(K)."""
    out = [_conv_out(n, k, stride, padding, dilation) for n in spatial]
    return batch * math.prod(out) * c_out * (c_in // groups) * k ** len(spatial)


def conv_t_formula(
    batch: int, c_in: int, c_out: int, spatial: tuple[int, ...], k: int, *, groups: int = 1
) -> int:
    """Every input element meets C_out/groups * prod(K) weights: B * prod(S_in) * C_in * ..."""
    return batch * math.prod(spatial) * c_in * (c_out // groups) * k ** len(spatial)


CONV_CASES = [
    # (dims, c_in, c_out, spatial, k, stride, padding, dilation, groups)
    (2, 3, 8, (17, 15), 3, 1, 1, 1, 1),
    (2, 4, 6, (16, 16), 3, 2, 0, 1, 2),
    (2, 8, 8, (12, 13), 3, 1, 2, 2, 8),  # depthwise, dilated
    (3, 2, 4, (8, 9, 10), 3, 2, 1, 1, 1),
    (3, 4, 8, (6, 6, 6), 3, 1, 0, 2, 4),
]


@pytest.mark.parametrize("dims,c_in,c_out,spatial,k,stride,padding,dilation,groups", CONV_CASES)
def test_conv_macs_match_formula(dims, c_in, c_out, spatial, k, stride, padding, dilation, groups):
    conv_cls = nn.Conv2d if dims == 2 else nn.Conv3d
    conv = conv_cls(
        c_in, c_out, k, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    x = torch.randn(2, c_in, *spatial)
    want = conv_formula(
        2, c_in, c_out, spatial, k, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    assert count_macs(conv, x) == want


@pytest.mark.parametrize("dims,groups", [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_transposed_conv_stride2_not_overcounted(dims, groups):
    conv_t_cls, conv_cls = (
        (nn.ConvTranspose2d, nn.Conv2d) if dims == 2 else (nn.ConvTranspose3d, nn.Conv3d)
    )
    spatial = (5, 6) if dims == 2 else (4, 5, 3)
    c_in, c_out, k, stride = 4, 6, 3, 2
    up = conv_t_cls(c_in, c_out, k, stride=stride, padding=1, output_padding=1, groups=groups)
    x = torch.randn(2, c_in, *spatial)
    macs = count_macs(up, x)
    assert macs == conv_t_formula(2, c_in, c_out, spatial, k, groups=groups)
    # the adjoint convolution (output -> input of the transposed one) does the same products
    y = up(x)
    adjoint = conv_cls(c_out, c_in, k, stride=stride, padding=1, groups=groups)
    assert adjoint(y).shape == x.shape
    assert count_macs(adjoint, y) == macs
    # counting over the output positions (stride * input) overcounts by exactly stride**dims
    assert tuple(y.shape[2:]) == tuple(stride * n for n in spatial)
    overcount = 2 * math.prod(y.shape[2:]) * c_out * (c_in // groups) * k**dims
    assert overcount == macs * stride**dims
    assert macs < overcount


def test_linear_and_matmul_macs():
    assert count_macs(nn.Linear(20, 7), torch.randn(5, 20)) == 5 * 20 * 7
    assert count_macs(nn.Linear(20, 7, bias=False), torch.randn(5, 3, 20)) == 5 * 3 * 20 * 7


class _SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.head = nn.Linear(8 * 16 * 16, 3)
        self.proj = nn.Parameter(torch.randn(3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        u = self.up(torch.relu(self.down(s)))
        z = self.head(torch.cat([s, u], 1).flatten(1))
        return z @ self.proj  # a functional matmul in the root's own forward


def test_small_net_sum_and_breakdown():
    net = _SmallNet()
    x = torch.randn(2, 1, 16, 16)
    parts = {
        "stem.0": conv_formula(2, 1, 4, (16, 16), 3, padding=1),
        "down": conv_formula(2, 4, 8, (16, 16), 3, stride=2, padding=1, groups=2),
        "up": conv_t_formula(2, 8, 4, (8, 8), 2),
        "head": 2 * 8 * 16 * 16 * 3,
        "": 2 * 3 * 2,
    }
    assert count_macs(net, x) == sum(parts.values())
    by_module = macs_by_module(net, x)
    assert by_module == parts  # norms and activations carry no MACs
    assert net.training  # eval mode was restored


def test_macs_scale_with_batch():
    net = _SmallNet()
    assert count_macs(net, torch.randn(3, 1, 16, 16)) == 3 * count_macs(
        net, torch.randn(1, 1, 16, 16)
    )


def _formula_from_hooks(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per-conv MACs from the closed-form formula on the shapes seen by forward hooks."""
    found: dict[str, int] = {}

    def hook(name: str):
        def fn(module: nn.modules.conv._ConvNd, args, out) -> None:
            b, c_in, *s_in = args[0].shape
            _, c_out, *s_out = out.shape
            k = math.prod(module.kernel_size)
            if module.transposed:
                found[name] = b * math.prod(s_in) * c_in * (c_out // module.groups) * k
            else:
                found[name] = b * math.prod(s_out) * c_out * (c_in // module.groups) * k

        return fn

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return found


@pytest.mark.parametrize("dims", [2, 3])
def test_monai_unet_matches_formula_layer_by_layer(dims):
    from monai.networks.nets import UNet

    net = UNet(dims, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    x = torch.randn(1, 1, *(16,) * dims)
    want = _formula_from_hooks(net, x)
    assert any(isinstance(m, nn.modules.conv._ConvTransposeNd) for m in net.modules())
    assert macs_by_module(net, x) == want
    assert count_macs(net, x) == sum(want.values())
