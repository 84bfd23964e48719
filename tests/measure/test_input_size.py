"""Issue #12.4: an input too small for the model's downsampling is one clear error naming the
smallest size that runs, from measure, build_graph, prune and the CLI; other failures are not
mislabelled as size errors."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from torch import nn

import medprune
from medprune.cli.__main__ import main
from medprune.errors import ShapeMismatchError, TraceError
from medprune.measure.input_size import SizeProbe, input_size_error, probe_input_size

UNET_KWARGS = {"channels": (4, 8, 16, 32), "strides": (2, 2, 2), "num_res_units": 0}


def _unet(spatial_dims: int = 2, **kwargs: object) -> nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(spatial_dims, 1, 2, **{**UNET_KWARGS, **kwargs})  # type: ignore[arg-type]


class _ViewBug(nn.Module):
    """Fails at every input size: reshapes to a width no feature map has."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).view(-1, 7)


class _FixedSize(nn.Module):
    """conv -> flatten -> Linear(4 * 16 * 16): runs on 16x16 inputs only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def test_probe_finds_the_smallest_size_and_the_multiple() -> None:
    # Three stride-2 levels: the bottleneck needs >= 2 pixels (InstanceNorm), so 16 is the
    # smallest; 24 runs too (24 -> 12 -> 6 -> 3), so sizes are multiples of 8.
    assert probe_input_size(_unet(), (torch.zeros(1, 1, 8, 8),)) == SizeProbe((8, 8), 16, 8)
    assert probe_input_size(_unet(), (torch.zeros(1, 1, 16, 16),)).suggestion() == (16, 16)
    probe = probe_input_size(_unet(), (torch.zeros(1, 1, 20, 40),))
    assert probe is not None and probe.suggestion() == (24, 40)


def test_measure_on_8x8_names_the_minimum_in_one_error() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        medprune.measure(_unet(), torch.randn(2, 1, 8, 8), latency=False)
    msg = str(info.value)
    assert "input spatial size (8, 8) is too small for UNet" in msg
    assert "the smallest size that runs is 16x16" in msg and "multiples of 8" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert len(traceback.format_exception(info.value)) < 15  # not a 40-line chain


@pytest.mark.parametrize("entry", ["build_graph", "prune"])
def test_build_graph_and_prune_on_8x8_raise_the_same_error(entry: str) -> None:
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ShapeMismatchError, match="smallest size that runs is 16x16") as info:
        if entry == "build_graph":
            medprune.build_graph(_unet(), x)
        else:
            medprune.prune(_unet(), x, criterion="l1", target_macs=0.3)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("criterion", ["taylor", "beta_rank"])
def test_calibration_batches_too_small_for_the_model_are_the_same_error(criterion: str) -> None:
    images, labels = torch.randn(4, 1, 8, 8), torch.zeros(4, 1, 8, 8)
    with pytest.raises(ShapeMismatchError, match=r"\(8, 8\) is too small for UNet") as info:
        medprune.prune(
            _unet(), torch.randn(1, 1, 32, 32), criterion=criterion, target_macs=0.3,
            calibration=[(images, labels)],
        )  # fmt: skip
    assert info.value.__cause__ is None


def test_a_size_between_multiples_gets_the_next_size_that_fits() -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(20, 20\) does not fit UNet's downsampling"):
        medprune.build_graph(_unet(), torch.randn(1, 1, 20, 20))


def test_3d_input_too_small_names_the_3d_minimum() -> None:
    model = _unet(3, channels=(4, 8, 16), strides=(2, 2))
    with pytest.raises(ShapeMismatchError) as info:
        medprune.measure(model, torch.randn(1, 1, 6, 6, 6), latency=False)
    assert "(6, 6, 6) is too small" in str(info.value)
    assert "the smallest size that runs is 8x8x8" in str(info.value)
    assert "torch.zeros(1, 1, 8, 8, 8) runs" in str(info.value)


def test_other_failures_are_not_labelled_as_size_errors() -> None:
    error = RuntimeError("boom")
    assert input_size_error(_ViewBug(), (torch.zeros(1, 1, 8, 8),), error) is None
    assert input_size_error(_unet(), (torch.zeros(1, 3, 8, 8),), error) is None  # 3 channels
    assert input_size_error(_FixedSize(), (torch.zeros(1, 1, 32, 32),), error) is None
    with pytest.raises(ShapeMismatchError) as info:
        medprune.measure(_ViewBug(), torch.randn(1, 1, 8, 8), latency=False)
    assert "too small" not in str(info.value) and info.value.__cause__ is not None
    with pytest.raises(TraceError) as trace_info:
        medprune.build_graph(_unet(), torch.randn(1, 3, 16, 16))
    assert "too small" not in str(trace_info.value)


def test_cli_inspect_prints_the_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    kwargs = '{"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "channels": [4, 8, 16, 32],'
    kwargs += ' "strides": [2, 2, 2], "num_res_units": 0}'
    argv = ["inspect", "--model", "monai.UNet", "--model-kwargs", kwargs]
    assert main([*argv, "--input-shape", "1,1,8,8"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("medprune inspect: error: input spatial size (8, 8) is too small")


def test_cli_prune_on_too_small_data_stops_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kwargs = '{"channels": [4, 8, 16, 32], "strides": [2, 2, 2], "num_res_units": 0}'
    argv = [
        "prune", "--out", str(tmp_path / "out"), "--model", "monai.UNet",
        "--set", f"model.kwargs={kwargs}", "--set", "data.kind=synthetic_segmentation",
        "--set", "data.n_train=4", "--set", "data.n_val=2", "--set", "data.n_test=2",
        "--set", "data.image_size=8", "--criterion", "l1", "--target-macs", "0.3",
        "--epochs", "1", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smallest size that runs is 16x16" in err[0]
    assert not (tmp_path / "out" / "base" / "model.pt").exists()


@pytest.mark.parametrize(
    ("size", "fix"),
    [(8, "Set data.image_size >= 16 (e.g. data.image_size: 16), a multiple of 8."),
     (20, "Set data.image_size >= 16 (e.g. data.image_size: 24), a multiple of 8.")],
)  # fmt: skip
def test_config_run_names_data_image_size_as_the_fix(size: int, fix: str) -> None:
    """In a config / CLI run the fix is the config key, not a tensor to resize."""
    from medprune.config import load_config
    from medprune.pipeline import build_model, setup_run

    config = load_config(
        None,
        {
            "model.name": "monai.UNet",
            "model.kwargs": UNET_KWARGS,
            "data": {"kind": "synthetic_segmentation", "n_train": 2, "n_val": 1, "n_test": 1,
                     "image_size": size},
            "progress": False,
        },
    )  # fmt: skip
    with pytest.raises(ShapeMismatchError) as info:
        build_model(setup_run(config))
    message = str(info.value)
    assert "smallest size that runs is 16x16" in message
    assert fix in message
    assert "Resize or pad" not in message and "torch.zeros" not in message
