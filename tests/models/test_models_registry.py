"""The model registry: name lookup, MONAI networks, user factories and their error messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.models import MONAI_MODELS, create_model, list_models, register_model
from medprune.models.registry import _MODELS
from medprune.models.tiny import TinyCNN

FACTORY_SOURCE = textwrap.dedent(
    """
    from torch import nn

    def build(in_channels=1, num_classes=2, width=4):
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(width, num_classes),
        )

    def not_a_model(**kwargs):
        return 42

    def raises_type_error(**kwargs):
        raise TypeError("boom inside the factory")
    """
)


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY_SOURCE)
    return path


def test_list_models_filters_and_sorts() -> None:
    tiny = list_models("tiny_*")
    assert tiny == sorted(tiny) and len(tiny) >= 14
    assert all(n.startswith("tiny_") for n in tiny)
    assert list_models("monai.*") == sorted(f"monai.{m}" for m in MONAI_MODELS)
    assert "resnet56" in list_models() and "monai.UNet" in list_models()
    assert list_models("no_such_*") == []


def test_create_model_by_name_passes_kwargs() -> None:
    model = create_model("tiny_cnn", in_channels=3, num_classes=5, hidden=7)
    assert isinstance(model, TinyCNN)
    assert model.fc1.out_features == 7
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Unknown model 'tiny_cn'. Did you mean 'tiny_cnn'?"):
        create_model("tiny_cn")
    with pytest.raises(ConfigError, match="Did you mean 'resnet56'"):
        create_model("resnet65")


def test_bad_kwarg_names_the_model_and_accepted_parameters() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("tiny_cnn", num_class=3)
    message = str(info.value)
    assert "'tiny_cnn'" in message and "num_class" in message
    assert "Did you mean 'num_classes'" in message
    assert "Accepted parameters: in_channels, num_classes, spatial_dims, hidden" in message


def test_bad_values_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3; got 4"):
        create_model("tiny_resnet", spatial_dims=4)
    with pytest.raises(ConfigError, match="shortcut must be 'A'.*got 'C'"):
        create_model("resnet56", shortcut="C")
    with pytest.raises(ConfigError, match="norm must be one of .*got 'layer'"):
        create_model("unet", norm="layer")


def test_factory_from_file(factory_file: Path) -> None:
    model = create_model(f"{factory_file}:build", in_channels=3, num_classes=4)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_factory_from_module_path(factory_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(factory_file.parent))
    model = create_model("my_models:build", width=6)
    assert isinstance(model, nn.Sequential) and model[0].out_channels == 6
    # a class works as a factory too
    assert isinstance(create_model("medprune.models.tiny:TinyCNN"), TinyCNN)


def test_factory_errors_name_the_problem(factory_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ConfigError, match="nope.py' does not exist"):
        create_model(f"{missing}:build")
    with pytest.raises(ConfigError, match="has no attribute 'biuld'. Did you mean 'build'?"):
        create_model(f"{factory_file}:biuld")
    with pytest.raises(ConfigError, match="returned int, not a torch.nn.Module"):
        create_model(f"{factory_file}:not_a_model")
    with pytest.raises(ConfigError, match="boom inside the factory"):
        create_model(f"{factory_file}:raises_type_error")
    with pytest.raises(ConfigError, match="unknown keyword arguments \\['depth'\\]"):
        create_model(f"{factory_file}:build", depth=3)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_pkg_xyz.mod'"):
        create_model("no_such_pkg_xyz.mod:build")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('broken at import')\n")
    with pytest.raises(ConfigError, match="RuntimeError: broken at import"):
        create_model(f"{broken}:build")


def test_register_model_rejects_duplicates_unless_override() -> None:
    try:

        @register_model("test_only_model")
        def first() -> nn.Module:
            return nn.Linear(2, 2)

        with pytest.raises(ConfigError, match="'test_only_model' is already registered"):
            register_model("test_only_model")(first)

        @register_model("test_only_model", override=True)
        def second() -> nn.Module:
            return nn.Linear(2, 3)

        assert create_model("test_only_model").out_features == 3
    finally:
        _MODELS._entries.pop("test_only_model", None)
    with pytest.raises(ConfigError, match="must be a non-empty string without ':'"):
        register_model("monai.Mine")


MONAI_CASES = [
    ("monai.UNet", {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                    "channels": (4, 8, 16), "strides": (2, 2)}, (1, 2, 32, 32)),
    ("monai.BasicUNet", {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                         "features": (4, 4, 8, 8, 16, 4)}, (1, 2, 32, 32)),
    ("monai.DenseNet121", {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                           "init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1)},
     (1, 2)),
    ("monai.resnet18", {"spatial_dims": 2, "n_input_channels": 1, "num_classes": 2}, (1, 2)),
    ("monai.SEResNet50", {"spatial_dims": 2, "in_channels": 1, "num_classes": 2,
                          "layers": (1, 1, 1, 1)}, (1, 2)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "out_shape"), MONAI_CASES)
def test_monai_networks_by_name(name: str, kwargs: dict, out_shape: tuple[int, ...]) -> None:
    model = create_model(name, **kwargs).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 32, 32))
    assert tuple(y.shape) == out_shape


def test_monai_errors() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'monai.BasicUNet'"):
        create_model("monai.BasicUNett")
    with pytest.raises(
        ConfigError, match="'monai.UNet' does not take the keyword argument 'chanels'.*channels"
    ):
        create_model("monai.UNet", spatial_dims=2, in_channels=1, out_channels=2, chanels=(4,))
