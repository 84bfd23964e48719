"""Every network of ``MONAI_MODELS`` builds from the common keyword arguments (``in_channels``,
``num_classes`` / ``out_channels``, ``spatial_dims``, ``image_size``) in 2D and 3D, and the
pipeline builds ``monai.resnet18`` / ``monai.DenseNet121`` from a YAML config naming only them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medprune.config import load_config
from medprune.errors import ConfigError
from medprune.models import MONAI_MODELS, create_model
from medprune.models.monai_kwargs import monai_kwargs

SEGMENTERS = {
    "AttentionUnet", "BasicUNet", "BasicUNetPlusPlus", "DynUNet", "FlexibleUNet", "HighResNet",
    "SegResNet", "UNet", "VNet",
}  # fmt: skip

# Size knobs only (never a common key), so that 26M-parameter nets build in a blink; None =
# the network's defaults (plus the derived ones) are small enough.
SMALL: dict[str, dict[str, Any]] = {
    "BasicUNet": {"features": (4, 4, 8, 8, 16, 4)},
    "BasicUNetPlusPlus": {"features": (4, 4, 8, 8, 16, 4)},
    "DenseNet121": {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1)},
    "DenseNet169": {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1)},
    "DynUNet": {"filters": (4, 8, 16)},
    "FlexibleUNet": {"decoder_channels": (8, 8, 8, 8, 8)},
    "HighResNet": {"layer_params": (
        {"name": "conv_0", "n_features": 4, "kernel_size": 3},
        {"name": "res_1", "n_features": 4, "kernels": (3, 3), "repeat": 1},
        {"name": "conv_1", "n_features": 8, "kernel_size": 1},
        {"name": "conv_2", "kernel_size": 1},
    )},
    "SEResNet50": {"layers": (1, 1, 1, 1), "inplanes": 16},
    "SEResNeXt50": {"layers": (1, 1, 1, 1), "inplanes": 32},
    "resnet10": {"widen_factor": 0.125},
    "resnet18": {"widen_factor": 0.125},
    "resnet34": {"widen_factor": 0.125},
    "resnet50": {"widen_factor": 0.125},
}  # fmt: skip

SIZE = {2: 32, 3: 16}
# 3D nets that halve their input four or five times (or have 5^3 kernels late) get 32^3
SIZE_3D = {n: 32 for n in ("BasicUNet", "BasicUNetPlusPlus", "DenseNet121", "DenseNet169",
                           "EfficientNetBN", "FlexibleUNet")}  # fmt: skip


def _common(name: str, dims: int, size: int) -> dict[str, Any]:
    n_out = "out_channels" if name in SEGMENTERS else "num_classes"
    return {"in_channels": 2, n_out: 3, "spatial_dims": dims, "image_size": size}


@pytest.mark.parametrize("name", MONAI_MODELS)
def test_every_monai_network_builds_from_the_common_kwargs(name: str) -> None:
    for dims in (2, 3):
        size = SIZE_3D.get(name, SIZE[dims]) if dims == 3 else SIZE[dims]
        torch.manual_seed(0)
        model = create_model(f"monai.{name}", **_common(name, dims, size), **SMALL.get(name, {}))
        model.eval()
        with torch.no_grad():
            y = model(torch.randn(2, 2, *(size,) * dims))
        if name == "BasicUNetPlusPlus":  # returns [logits] even without deep supervision
            y = y[0]
        expected = (2, 3, *(size,) * dims) if name in SEGMENTERS else (2, 3)
        assert tuple(y.shape) == expected, (name, dims)
        assert torch.isfinite(y).all()


def test_the_irregular_ones_get_their_own_spelling() -> None:
    common = {"in_channels": 1, "num_classes": 4, "spatial_dims": 2, "image_size": [28, 28]}
    assert monai_kwargs("resnet18", common) == {
        "n_input_channels": 1, "num_classes": 4, "spatial_dims": 2,
    }  # fmt: skip
    assert monai_kwargs("DenseNet121", common) == {
        "in_channels": 1, "out_channels": 4, "spatial_dims": 2,
    }  # fmt: skip
    assert monai_kwargs("SEResNet50", common)["num_classes"] == 4
    eff = monai_kwargs("EfficientNetBN", common)
    assert eff["pretrained"] is False and eff["model_name"] == "efficientnet-b0"
    clf = monai_kwargs("Classifier", common)
    assert clf["in_shape"] == (1, 28, 28) and clf["classes"] == 4
    assert clf["channels"] == (16, 32, 64) and clf["strides"] == (2, 2, 2)  # 28 -> 14 -> 7 -> 4
    assert monai_kwargs("Regressor", common)["out_shape"] == (4,)


def test_required_arguments_are_derived_from_the_image_size() -> None:
    seg = {"in_channels": 1, "out_channels": 2, "spatial_dims": 2}
    unet = monai_kwargs("UNet", {**seg, "image_size": 28})  # 28 halves evenly twice
    assert unet["channels"] == (16, 32, 64) and unet["strides"] == (2, 2)
    assert monai_kwargs("AttentionUnet", {**seg, "image_size": 128})["strides"] == (2, 2, 2, 2)
    dyn = monai_kwargs("DynUNet", {**seg, "image_size": 28})
    assert dyn["kernel_size"] == [3, 3, 3] and dyn["strides"] == [1, 2, 2]
    assert dyn["upsample_kernel_size"] == [2, 2]
    dyn = monai_kwargs("DynUNet", {**seg, "strides": [1, 2, 2, 2]})  # the depth the user gave
    assert dyn["kernel_size"] == [3] * 4 and dyn["upsample_kernel_size"] == [2, 2, 2]
    model = create_model("monai.UNet", **seg, image_size=28).eval()
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 2, 28, 28)
    vnet = monai_kwargs("VNet", seg)
    assert vnet["dropout_dim"] == 2  # MONAI's default 3 drops whole samples of a 2D batch


def test_the_users_own_spelling_wins() -> None:
    got = monai_kwargs("resnet18", {"in_channels": 1, "n_input_channels": 3, "num_classes": 2})
    assert got["n_input_channels"] == 3 and "in_channels" not in got
    got = monai_kwargs("UNet", {"in_channels": 1, "out_channels": 2, "spatial_dims": 2,
                                "channels": (4, 8), "strides": (2,)})  # fmt: skip
    assert got["channels"] == (4, 8) and got["strides"] == (2,)
    got = monai_kwargs("DenseNet121", {"in_channels": 1, "num_classes": 2, "out_channels": 5,
                                       "spatial_dims": 2})  # fmt: skip
    assert got["out_channels"] == 5


def test_a_key_the_network_does_not_take_names_network_key_and_accepted_keys() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("monai.resnet18", in_channels=1, num_classes=2, spatial_dims=2, widen_factr=2)
    message = str(info.value)
    assert "'monai.resnet18' does not take the keyword argument 'widen_factr'" in message
    assert "Did you mean 'widen_factor'?" in message
    assert "Accepted keys: " in message and "n_input_channels" in message
    assert "block_inplanes" not in message  # filled by resnet18 itself
    with pytest.raises(ConfigError, match="'monai.DenseNet121' does not take .*'dropout'.*"
                                          "Accepted keys: .*dropout_prob"):  # fmt: skip
        create_model("monai.DenseNet121", in_channels=1, num_classes=2, spatial_dims=2,
                     dropout=0.1)  # fmt: skip
    with pytest.raises(ConfigError, match="'monai.Classifier' needs in_shape"):
        create_model("monai.Classifier", in_channels=1, num_classes=2, spatial_dims=2)
    with pytest.raises(ConfigError, match="in_shape \\(3, 32, 32\\) has 3 channels but "
                                          "in_channels is 1"):  # fmt: skip
        create_model("monai.Classifier", in_channels=1, num_classes=2, in_shape=(3, 32, 32))


@pytest.mark.parametrize("name", ["monai.resnet18", "monai.DenseNet121"])
def test_a_yaml_config_naming_only_the_monai_classifier_runs_through_the_pipeline(
    tmp_path: Path, name: str
) -> None:
    """The user's steps of issue #12: ``model: {name: monai.resnet18}`` in run.yaml, nothing
    else about the model; before, ``in_channels`` was passed through and MONAI rejected it."""
    from medprune.pipeline import build_model, setup_run

    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        f"model: {{name: {name}}}\n"
        "data: {kind: synthetic_classification, n_train: 8, n_val: 4, n_test: 4, "
        "image_size: 32, in_channels: 1, num_classes: 3}\n"
        "train: {batch_size: 4}\n"
        "progress: false\n"
    )
    setup = setup_run(load_config(yaml_file))
    assert setup.model_kwargs["in_channels"] == 1 and setup.model_kwargs["num_classes"] == 3
    model = build_model(setup).eval()
    x, y = next(iter(setup.train_loader))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (len(y), 3)
    assert torch.isfinite(setup.task.loss(logits, y))


@pytest.mark.parametrize("name", ["monai.UNet", "monai.DynUNet", "monai.AttentionUnet"])
def test_a_monai_segmenter_named_alone_builds_for_the_data(name: str) -> None:
    """Channels / strides / kernel sizes come from the 28x28 images (two even halvings)."""
    from medprune.pipeline import build_model, setup_run

    config = load_config(None, {
        "model.name": name, "progress": False, "train.batch_size": 2,
        "data": {"kind": "synthetic_segmentation", "n_train": 2, "n_val": 2, "n_test": 2,
                 "image_size": 28},
    })  # fmt: skip
    setup = setup_run(config)
    assert setup.model_kwargs["image_size"] == [28, 28]
    x, y = next(iter(setup.train_loader))
    with torch.no_grad():
        logits = build_model(setup).eval()(x)
    assert logits.shape == (x.shape[0], setup.num_classes, 28, 28)
    assert torch.isfinite(setup.task.loss(logits, y))


@pytest.mark.parametrize("name", ["monai.Classifier", "monai.Regressor"])
def test_classifier_without_any_shape_is_a_config_error_not_a_key_error(name: str) -> None:
    """Audit: ``create_model("monai.Classifier")`` raised ``KeyError: 'in_shape'``."""
    with pytest.raises(ConfigError, match=f"'{name}' needs in_shape=\\(C, \\*S\\).*input-shape"):
        create_model(name)
    with pytest.raises(ConfigError, match=f"'{name}' needs in_shape"):
        create_model(name, num_classes=2, image_size=32)  # no channel count either
