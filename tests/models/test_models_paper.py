"""The paper architectures: parameter counts against the published figures and layouts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medprune.errors import ShapeMismatchError
from medprune.models import create_model
from medprune.models.blocks import BasicBlock
from medprune.models.vgg import VGG16_CFG


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cifar_resnet_params(n: int, num_classes: int, in_channels: int = 3) -> int:
    """Hand count: stem conv + BN, 2 (conv3x3 + BN) per block, option-A shortcuts, fc."""
    total = 9 * in_channels * 16 + 2 * 16
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += 9 * c_in * width + 9 * width * width + 4 * width
            c_in = width
    return total + 64 * num_classes + num_classes


def test_resnet56_and_resnet110_param_counts() -> None:
    r56 = create_model("resnet56", in_channels=3, num_classes=10)
    r110 = create_model("resnet110", in_channels=3, num_classes=10)
    assert n_params(r56) == cifar_resnet_params(9, 10)
    assert n_params(r110) == cifar_resnet_params(18, 10)
    assert round(n_params(r56) / 1e6, 3) == 0.853  # He et al. / HRank: 0.85 M
    assert round(n_params(r110) / 1e6, 3) == 1.728  # 1.73 M
    # shortcut "B" adds the two 1x1 projections (16->32, 32->64) with their BNs
    r56b = create_model("resnet56", num_classes=10, shortcut="B")
    assert n_params(r56b) - n_params(r56) == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64


def test_vgg16_bn_param_count() -> None:
    model = create_model("vgg16_bn", in_channels=3, num_classes=10)
    widths = [w for w in VGG16_CFG if w != "M"]
    convs = sum(
        9 * c_in * c_out + c_out + 2 * c_out
        for c_in, c_out in zip([3, *widths[:-1]], widths, strict=True)
    )
    head = 512 * 512 + 512 + 2 * 512 + 512 * 10 + 10
    assert n_params(model) == convs + head
    assert round(n_params(model) / 1e6, 2) == 14.99  # HRankPlus: 14.98-14.99 M
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 13


def test_vgg16_bn_matches_reference_avgpool_at_32px_and_runs_larger() -> None:
    model = create_model("vgg16_bn", in_channels=1, num_classes=3).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        features = model.features(x)
        assert features.shape == (2, 512, 2, 2)
        reference = model.classifier(torch.flatten(F.avg_pool2d(features, 2), 1))
        torch.testing.assert_close(model(x), reference)
        assert model(torch.randn(1, 1, 64, 48)).shape == (1, 3)


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    block = BasicBlock(2, 16, 32, stride=2, shortcut="A")
    assert not any(p.numel() for p in block._modules["shortcut"].parameters())
    x = torch.randn(1, 16, 8, 8)
    out = block._shortcut(x)
    assert out.shape == (1, 32, 4, 4)
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])


def test_alexnet_small_layout_and_sizes() -> None:
    model = create_model("alexnet_small", in_channels=3, num_classes=2).eval()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256]
    linears = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 8), (8, 8), (8, 2)]
    for size in (16, 32, 64):
        assert model(torch.randn(1, 3, size, size)).shape == (1, 2)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_2d_and_3d(norm: str) -> None:
    model = create_model("unet", in_channels=1, out_channels=3, depth=3, base_channels=4, norm=norm)
    assert model(torch.randn(1, 1, 32, 24)).shape == (1, 3, 32, 24)
    assert len(model.encoders) == 4 and len(model.ups) == 3
    assert [u.out_channels for u in model.ups] == [16, 8, 4]
    model3d = create_model("unet3d", in_channels=2, out_channels=2, depth=2, base_channels=4)
    assert model3d(torch.randn(1, 2, 8, 16, 16)).shape == (1, 2, 8, 16, 16)
    same = create_model("unet", in_channels=2, spatial_dims=3, depth=2, base_channels=4)
    assert n_params(model3d) == n_params(same)
    with pytest.raises(ShapeMismatchError, match="divisible by 8"):
        model(torch.randn(1, 1, 20, 32))


def test_unet_default_param_count() -> None:
    # 4 levels of two conv3x3 + BN from 32 to 512 channels, concat decoders, 1x1 head
    assert round(n_params(create_model("unet")) / 1e6, 2) == 7.76


@pytest.mark.parametrize("size", [28, 64, 128])
def test_small_resnet_medmnist_sizes(size: int) -> None:
    model = create_model("small_resnet", in_channels=1, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 2)
    assert 0.5e6 < n_params(model) < 1.0e6
    assert [model.layer4[0].conv1.out_channels, model.fc.in_features] == [128, 128]
