"""Target forms: class indices (B, *S), MONAI's channel-first (B, 1, *S) and one-hot (B, C, *S)
give the same loss and metrics; anything else is one clear error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medprune.errors import DataError, ShapeMismatchError
from medprune.tasks import ClassificationTask, SegmentationTask, evaluate, segmentation_metrics
from medprune.tasks.targets import class_indices, class_indices_like_inputs, targets_for_outputs


def _seg_forms(spatial_dims: int, num_classes: int = 3) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(0)
    s = (6,) * spatial_dims
    idx = torch.randint(0, num_classes, (2, *s), generator=g)  # (B, *S)
    forms = {
        "indices": idx,
        "channel_int": idx.unsqueeze(1),  # (B, 1, *S) int
        "channel_float": idx.unsqueeze(1).float(),  # MONAI LoadImage style
        "one_hot": F.one_hot(idx, num_classes).movedim(-1, 1).float(),  # (B, C, *S)
        "one_hot_int": F.one_hot(idx, num_classes).movedim(-1, 1),
    }
    return idx, forms


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_segmentation_form_reads_as_the_same_indices(spatial_dims: int) -> None:
    idx, forms = _seg_forms(spatial_dims)
    outputs = torch.zeros(2, 3, *idx.shape[1:])
    for name, t in forms.items():
        out = targets_for_outputs(outputs, t)
        assert out.dtype == torch.int64, name
        assert torch.equal(out, idx), name
        assert torch.equal(class_indices_like_inputs(torch.zeros(2, 1, *idx.shape[1:]), t), idx)


@pytest.mark.parametrize("loss", ["dice_ce", "ce", "dice"])
def test_segmentation_loss_is_identical_for_the_label_forms(loss: str) -> None:
    idx, forms = _seg_forms(2)
    task = SegmentationTask(3, loss=loss)
    logits = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    reference = task.loss(logits, idx)
    for name, t in forms.items():
        assert float(task.loss(logits, t)) == pytest.approx(float(reference), abs=0), name


def test_segmentation_metrics_and_evaluate_are_identical_for_the_label_forms() -> None:
    idx, forms = _seg_forms(2)
    pred = torch.randint(0, 3, idx.shape, generator=torch.Generator().manual_seed(2))
    reference = segmentation_metrics(pred, idx, 3, hd95=False)
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    task = SegmentationTask(3, hd95=False)
    evaluated = evaluate(conv, task, [(x, idx)])
    for name, t in forms.items():
        assert segmentation_metrics(pred, t, 3, hd95=False) == reference, name
        assert evaluate(conv, task, [(x, t)]) == evaluated, name


def test_classification_forms_give_the_same_loss_and_metrics() -> None:
    labels = torch.tensor([0, 2, 1, 2])
    task = ClassificationTask(3)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    forms = [labels, labels[:, None], labels.float(), F.one_hot(labels, 3).float()]
    reference = float(task.loss(logits, labels))
    linear = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    metrics = evaluate(linear, task, [(x, labels)])
    for t in forms:
        assert float(task.loss(logits, t)) == reference
        assert evaluate(linear, task, [(x, t)]) == metrics


def test_a_bad_target_shape_names_the_shapes_and_the_accepted_forms() -> None:
    task = SegmentationTask(2)
    logits = torch.zeros(2, 2, 8, 8)
    with pytest.raises(ShapeMismatchError) as info:
        task.loss(logits, torch.zeros(2, 3, 8, 8))  # 3 channels for a 2-class model
    msg = str(info.value)
    assert "(2, 8, 8) (class indices)" in msg and "(2, 1, 8, 8)" in msg
    assert "(2, 2, 8, 8) (one-hot" in msg and "got (2, 3, 8, 8)" in msg
    with pytest.raises(ShapeMismatchError, match=r"got \(2, 1, 4, 4\)"):
        task.loss(logits, torch.zeros(2, 1, 4, 4))  # wrong spatial size
    with pytest.raises(ShapeMismatchError, match=r"targets must have shape \(4,\)"):
        class_indices(torch.zeros(4, 2, 2), (4,), num_classes=2)


def test_bad_target_values_are_clear_errors() -> None:
    outputs = torch.zeros(1, 2, 2, 2)
    with pytest.raises(DataError, match="integer class indices.*holding 0.5"):
        targets_for_outputs(outputs, torch.tensor([[[[0.0, 0.5], [1.0, 0.0]]]]))  # (1, 1, 2, 2)
    with pytest.raises(DataError, match=r"values in \[0, 255\], not \[0, 1\]"):
        targets_for_outputs(outputs, torch.tensor([[[0.0, 255.0], [0, 0]], [[1, 0], [1, 1]]])[None])
    overlapping = torch.ones(1, 2, 2, 2)  # both channels on: a multi-label map
    with pytest.raises(DataError, match="must sum to 1 .* some sum to 2"):
        targets_for_outputs(outputs, overlapping)
    with pytest.raises(DataError, match="label 3 is outside"):
        SegmentationTask(2).loss(outputs, torch.full((1, 1, 2, 2), 3.0))


def test_labels_outside_the_output_classes_name_the_value_the_classes_and_the_fix() -> None:
    outputs = torch.zeros(2, 3, 4, 4)  # 3 output channels
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, 0, 0] = 255.0  # a PNG mask holding 0 / 255
    with pytest.raises(DataError, match=r"target label 255 .*\[0, 2\] for num_classes=3.*// 255"):
        targets_for_outputs(outputs, mask)
    with pytest.raises(DataError, match=r"target label -1 .*\[0, 2\]"):
        class_indices(torch.full((2,), -1), (2,), num_classes=3)
    with pytest.raises(DataError, match=r"target label 255 .*num_classes=2"):
        SegmentationTask(2).loss(torch.zeros(2, 2, 4, 4), mask)


def test_a_single_channel_output_is_binary_for_every_label_form() -> None:
    g = torch.Generator().manual_seed(0)
    idx = (torch.rand(2, 4, 4, generator=g) > 0.5).long()  # (B, H, W)
    one_hot = F.one_hot(idx, 2).movedim(-1, 1).float()  # (B, 2, H, W)
    outputs = torch.randn(2, 1, 4, 4, generator=g)  # one sigmoid logit per pixel
    for t in (idx, idx[:, None].float(), one_hot):
        assert torch.equal(targets_for_outputs(outputs, t), idx)
    with pytest.raises(DataError, match=r"target label 2 .*\[0, 1\]"):
        targets_for_outputs(outputs, idx + 1)


@pytest.mark.parametrize("loss", ["dice_ce", "ce", "dice"])
def test_segmentation_task_reads_a_single_logit_as_sigmoid(loss: str) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 1, 8, 8, generator=g)  # (B, 1, H, W) foreground logits
    y = (torch.rand(2, 1, 8, 8, generator=g) > 0.6).float()  # (B, 1, H, W)
    task = SegmentationTask(2, loss=loss, hd95=False)
    two = torch.cat([torch.zeros_like(z), z], dim=1)  # the equivalent 2-class logits
    torch.testing.assert_close(task.loss(z, y), task.loss(two, y))
    if loss == "ce":
        torch.testing.assert_close(task.loss(z, y), F.binary_cross_entropy_with_logits(z, y))
    assert torch.equal(task.predict(z), (z[:, 0] > 0).long())
    torch.testing.assert_close(task.predict_proba(z)[:, 1], torch.sigmoid(z[:, 0]))
    model = torch.nn.Conv2d(1, 1, 1)
    metrics = task.evaluate(model, [(torch.randn(2, 1, 8, 8, generator=g), y)])
    assert len(metrics["per_class"]) == 2 and metrics["dice"] is not None


def test_classification_task_reads_a_single_logit_as_sigmoid() -> None:
    z = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])  # (B, 1)
    y = torch.tensor([1, 0, 0, 1])
    task = ClassificationTask(2)
    torch.testing.assert_close(
        task.loss(z, y), F.binary_cross_entropy_with_logits(z[:, 0], y.float())
    )
    torch.testing.assert_close(task.loss(z, y[:, None]), task.loss(z, y))
    assert task.predict(z).tolist() == [1, 0, 1, 0]
    metrics = task.evaluate(torch.nn.Flatten(), [(z, y)])
    assert metrics["accuracy"] == pytest.approx(0.5)
