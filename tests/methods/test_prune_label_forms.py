"""Issue #12.1, the user's exact steps: a MONAI UNet pruned with a calibration DataLoader that
yields MONAI-style channel-first float labels (B, 1, H, W), or one-hot labels (B, 2, H, W)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import medprune
from medprune.errors import ConfigError, DataError, ShapeMismatchError
from medprune.methods.guard import class_counts
from medprune.tasks import SegmentationTask, TrainRecipe


def _unet(out_channels: int = 2) -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=out_channels,
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


def _binary_batches(form: str) -> list:
    """Sigmoid-setup batches: labels (B, 1, H, W) float in {0, 1}, as a tuple, dict or MetaTensor."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 1, 32, 32, generator=g)
    labels = (torch.rand(8, 1, 32, 32, generator=g) > 0.7).float()
    if form == "metatensor":
        from monai.data import MetaTensor

        images, labels = MetaTensor(images), MetaTensor(labels)
    pairs = [(images[i : i + 4], labels[i : i + 4]) for i in (0, 4)]
    if form == "dict":
        return [{"image": x, "label": y} for x, y in pairs]
    return pairs


@pytest.mark.parametrize(
    ("criterion", "form", "class_aware"),
    [
        ("taylor", "tuple", False),
        ("taylor", "dict", True),
        ("taylor", "metatensor", False),
        ("taylor_gn", "tuple", True),
        ("taylor_gn", "metatensor", False),
    ],
)
def test_prune_single_channel_sigmoid_unet(criterion: str, form: str, class_aware: bool) -> None:
    model = _unet(out_channels=1)
    x = torch.randn(1, 1, 32, 32)
    result = medprune.prune(
        model,
        x,
        criterion=criterion,
        target_macs=0.5,
        calibration=_binary_batches(form),
        criterion_kwargs={"class_aware": class_aware},
        progress=False,
    )
    assert result.summary["macs_removed"] == pytest.approx(0.5, abs=0.05)
    assert result.model(x).shape == (1, 1, 32, 32)


def test_prune_single_channel_unet_with_a_segmentation_task() -> None:
    model, x = _unet(out_channels=1), torch.randn(1, 1, 32, 32)
    task = SegmentationTask(2, hd95=False)
    result = medprune.prune(
        model,
        x,
        criterion="taylor",
        target_macs=0.3,
        calibration=_binary_batches("tuple"),
        task=task,
    )
    assert result.model(x).shape == (1, 1, 32, 32)
    assert len(task.evaluate(result.model, _binary_batches("tuple"))["per_class"]) == 2


def test_prune_single_logit_classifier_with_binary_labels() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 1),  # one logit: sigmoid binary classifier
    )
    images = torch.randn(8, 1, 16, 16)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    batches = [(images[:4], labels[:4]), (images[4:], labels[4:, None].float())]
    for name in ("taylor", "taylor_gn"):
        result = medprune.prune(
            model, images[:1], criterion=name, ratio=0.25, calibration=batches, progress=False
        )
        assert result.model(images[:1]).shape == (1, 1)


def test_prune_uses_a_monai_loss_given_as_task() -> None:
    from monai.losses import DiceLoss

    calls = []

    class CountingDice(DiceLoss):
        def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            calls.append(tuple(target.shape))
            return super().forward(input, target)

    model, x = _unet(out_channels=1), torch.randn(1, 1, 32, 32)
    batches = _binary_batches("tuple")
    kw = {"criterion": "taylor", "target_macs": 0.3, "calibration": batches, "progress": False}
    with_dice = medprune.prune(model, x, task=CountingDice(sigmoid=True), **kw)
    assert calls == [(4, 1, 32, 32), (4, 1, 32, 32)]  # the loader's targets, unchanged
    default = medprune.prune(model, x, **kw)
    assert with_dice.plan.to_dict() != default.plan.to_dict()  # the loss drove the scores


def test_prune_refuses_a_task_that_is_neither_a_task_nor_a_loss() -> None:
    with pytest.raises(ConfigError, match="task must be a medprune task.*got a str"):
        medprune.prune(
            _unet(), torch.randn(1, 1, 32, 32), criterion="taylor", target_macs=0.3,
            calibration=_binary_batches("tuple"), task="dice",
        )  # fmt: skip


def test_prune_refuses_fine_tuning_with_a_plain_loss() -> None:
    from monai.losses import DiceLoss

    with pytest.raises(ConfigError, match="fine-tuning needs a medprune task.*DiceLoss"):
        medprune.prune(
            _unet(out_channels=1), torch.randn(1, 1, 32, 32), criterion="taylor",
            target_macs=0.3, calibration=_binary_batches("tuple"), task=DiceLoss(sigmoid=True),
            fine_tune=TrainRecipe(epochs=1), train_loader=_binary_batches("tuple"),
        )  # fmt: skip


def test_prune_with_0_255_masks_names_the_label_and_the_fix() -> None:
    images = torch.randn(4, 1, 32, 32)
    masks = torch.zeros(4, 1, 32, 32)
    masks[:, :, 8:16, 8:16] = 255.0  # a PNG mask read as is
    with pytest.raises(DataError, match=r"target label 255 .*num_classes=3.*// 255"):
        medprune.prune(
            _unet(out_channels=3), images[:1], criterion="taylor", target_macs=0.3,
            calibration=[(images, masks)], progress=False,
        )  # fmt: skip
