"""Contract tests over every registered built-in model (``list_models()`` minus ``monai.*``):
it builds, runs forward on a small input with the right output shape, and back-propagates."""

from __future__ import annotations

import inspect

import pytest
import torch

from medprune.models import create_model, example_input, list_models
from medprune.models.registry import _MODELS

BUILTIN = [n for n in list_models() if not n.startswith("monai.")]
TINY = list_models("tiny_*")

# Smaller settings for the big nets so that the contract run stays fast; shapes are unaffected.
SMALL_KWARGS: dict[str, dict[str, int]] = {
    "unet": {"depth": 2, "base_channels": 8},
    "unet3d": {"depth": 2, "base_channels": 8},
}


def _params(name: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(_MODELS.get(name)).parameters)


def _dims(name: str) -> list[int]:
    if "spatial_dims" in _params(name):
        return [2, 3]
    return [3] if name.endswith("3d") else [2]


def _case(name: str, spatial_dims: int, in_channels: int = 2, n_out: int = 3):
    """Build ``name`` and an input; return (model, x, expected output shape)."""
    params = _params(name)
    kwargs: dict[str, int] = {"in_channels": in_channels, **SMALL_KWARGS.get(name, {})}
    if "spatial_dims" in params:
        kwargs["spatial_dims"] = spatial_dims
    if "num_classes" in params:
        kwargs["num_classes"] = n_out
    else:
        assert "out_channels" in params, f"{name} takes neither num_classes nor out_channels"
        kwargs["out_channels"] = n_out
    model = create_model(name, **kwargs)
    size = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    x = torch.randn(2, in_channels, *size)
    expected = (2, n_out) if "num_classes" in params else (2, n_out, *size)
    return model, x, expected


def test_registry_lists_every_required_model() -> None:
    required = {"vgg16_bn", "resnet56", "resnet110", "alexnet_small", "unet", "unet3d"}
    required |= {"small_resnet", "tiny_cnn", "tiny_cnn_gap", "tiny_resnet", "tiny_unet"}
    required |= {"tiny_unet3d", "tiny_grouped", "tiny_groupnorm", "tiny_instancenorm"}
    required |= {"tiny_prelu", "tiny_se", "tiny_dense", "tiny_inplace", "tiny_mlp_head"}
    required |= {"tiny_pad_shortcut"}
    assert required <= set(BUILTIN), sorted(required - set(BUILTIN))


@pytest.mark.parametrize("name", BUILTIN)
def test_builds_and_runs_with_right_output_shape(name: str) -> None:
    for spatial_dims in _dims(name):
        model, x, expected = _case(name, spatial_dims)
        model.eval()
        with torch.no_grad():
            y = model(x)
        assert tuple(y.shape) == expected, (name, spatial_dims)
        assert y.dtype == torch.float32
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_is_small_and_every_parameter_learns(name: str) -> None:
    for spatial_dims in _dims(name):
        model, x, _ = _case(name, spatial_dims)
        n_params = sum(p.numel() for p in model.parameters())
        assert 0 < n_params < 50_000, (name, spatial_dims, n_params)
        model.train()
        model(x).square().mean().backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert not no_grad, f"{name} ({spatial_dims}D): parameters without gradient {no_grad}"


@pytest.mark.parametrize("name", [n for n in TINY if 2 in _dims(n)])
@pytest.mark.parametrize("height", [16, 24, 32])
def test_tiny_2d_models_accept_heights_16_to_32(name: str, height: int) -> None:
    model, _, _ = _case(name, 2, in_channels=1, n_out=2)
    model.eval()
    y = model(torch.randn(2, 1, height, 32))
    assert y.shape[:2] == (2, 2)
    if y.dim() == 4:  # segmenter: same spatial size as the input
        assert tuple(y.shape[2:]) == (height, 32)


@pytest.mark.parametrize("name", [n for n in TINY if 2 in _dims(n)])
def test_tiny_model_exports_and_matches_eager(name: str) -> None:
    model, x, _ = _case(name, 2)
    model.eval()
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


@pytest.mark.parametrize("name", TINY)
def test_example_input_fits_every_tiny_model(name: str) -> None:
    model = create_model(name, in_channels=3).eval()
    x = example_input(model, batch_size=1, generator=torch.Generator().manual_seed(0))
    assert x.shape[:2] == (1, 3) and x.dim() == 2 + model.spatial_dims
    torch.testing.assert_close(
        x, example_input(model, batch_size=1, generator=torch.Generator().manual_seed(0))
    )
    with torch.no_grad():
        assert model(x).shape[0] == 1
