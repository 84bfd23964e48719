"""``--model NAME --input-shape B,C,...``: one code path (``model_for_input``) fills what the
shape tells for ``measure``, ``export`` and ``inspect`` alike, and a missing output count."""

from __future__ import annotations

import pytest
import torch

from medprune.cli.__main__ import main
from medprune.cli._common import model_for_input


def _forward(model: torch.nn.Module, shape: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.zeros(*shape))


def test_in_channels_and_spatial_dims_follow_the_input_shape() -> None:
    resnet = model_for_input("monai.resnet18", {}, [1, 1, 32, 32])
    assert resnet.conv1.in_channels == 1 and isinstance(resnet.conv1, torch.nn.Conv2d)
    unet = model_for_input("monai.UNet", {"spatial_dims": 2, "out_channels": 2}, [1, 1, 16, 16])
    assert _forward(unet, [1, 1, 16, 16]).shape == (1, 2, 16, 16)
    seg = model_for_input(
        "monai.SegResNet",
        {"in_channels": 1, "init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]},
        [1, 1, 16, 16],
    )
    assert not any(isinstance(m, torch.nn.Conv3d) for m in seg.modules())  # 2D, as the input


def test_a_missing_class_count_defaults_to_two_with_a_note(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kwargs = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1)}
    dense = model_for_input("monai.DenseNet121", kwargs, [1, 1, 16, 16])
    assert _forward(dense, [1, 1, 16, 16]).shape == (1, 2)
    err = capsys.readouterr().err
    assert "note: model 'monai.DenseNet121' needs out_channels" in err
    assert "--model-kwargs out_channels=N" in err
    model_for_input("monai.DenseNet121", {**kwargs, "num_classes": 3}, [1, 1, 16, 16])
    assert capsys.readouterr().err == ""  # given: no note


def test_inspect_builds_a_monai_classifier_from_the_input_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Audit: ``inspect --model monai.Classifier --input-shape 1,1,64,64`` hit KeyError."""
    code = main(["inspect", "--model", "monai.Classifier", "--input-shape", "1,1,16,16"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "input: (1, 1, 16, 16)" in out and out.splitlines()[-1].startswith("equivalence: ")
    assert "using classes=2" in err
