"""Issue #12.1, the user's exact steps: a MONAI UNet pruned with a calibration DataLoader that
yields MONAI-style channel-first float labels (B, 1, H, W), or one-hot labels (B, 2, H, W)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import medprune
from medprune.errors import ShapeMismatchError
from medprune.methods.guard import class_counts
from medprune.tasks import SegmentationTask


def _unet() -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        channels=(4, 8, 16),
        strides=(2, 2),
        num_res_units=0,
    )


def _loader(one_hot: bool) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 1, 32, 32, generator=g)  # (N, 1, H, W)
    labels = (torch.rand(8, 1, 32, 32, generator=g) > 0.7).float()  # (N, 1, H, W) float
    if one_hot:
        labels = F.one_hot(labels[:, 0].long(), 2).movedim(-1, 1).float()  # (N, 2, H, W)
    return DataLoader(TensorDataset(images, labels), batch_size=4)


@pytest.mark.parametrize("one_hot", [False, True], ids=["channel_first", "one_hot"])
@pytest.mark.parametrize("criterion", ["taylor", "beta_rank"])
def test_prune_monai_unet_with_monai_style_labels(criterion: str, one_hot: bool) -> None:
    model = _unet()
    x = torch.randn(1, 1, 32, 32)
    result = medprune.prune(
        model,
        x,
        criterion=criterion,
        target_macs=0.3,
        calibration=_loader(one_hot),
        task=SegmentationTask(2),
    )
    assert result.summary["macs_removed"] == pytest.approx(0.3, abs=0.05)
    assert result.model(x).shape == (1, 2, 32, 32)


def test_prune_with_labels_of_the_wrong_channel_count_is_one_clear_error() -> None:
    images = torch.randn(4, 1, 32, 32)
    labels = torch.zeros(4, 3, 32, 32)  # 3 channels for a 2-class model
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    with pytest.raises(ShapeMismatchError, match=r"got \(4, 3, 32, 32\)"):
        medprune.prune(
            _unet(),
            images[:1],
            criterion="taylor",
            target_macs=0.3,
            calibration=loader,
            task=SegmentationTask(2),
        )


def test_guard_class_counts_read_one_hot_and_channel_first_labels() -> None:
    expected = class_counts([(x, y[:, 0].long()) for x, y in _loader(one_hot=False)], num_classes=2)
    assert int(expected.sum()) == 8 * 32 * 32
    assert torch.equal(class_counts(_loader(one_hot=False), 2), expected)
    assert torch.equal(class_counts(_loader(one_hot=True), 2), expected)
