"""Data-driven criteria read segmentation labels in every form MONAI pipelines produce:
(B, *S) indices, channel-first (B, 1, *S) (int or float) and one-hot (B, C, *S)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medprune.criteria import get_criterion
from medprune.criteria.streaming import default_loss, image_buckets, loss_for
from medprune.errors import ConfigError, DataError, ShapeMismatchError
from medprune.graph import build_graph
from medprune.models import create_model
from medprune.tasks import SegmentationTask


def _label_forms() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g)
    idx = (torch.rand(4, 8, 8, generator=g) > 0.7).long()  # (B, H, W)
    forms = {
        "indices": idx,
        "channel_float": idx[:, None].float(),  # (B, 1, H, W) float, MONAI LoadImage style
        "one_hot": F.one_hot(idx, 2).movedim(-1, 1).float(),  # (B, 2, H, W)
    }
    return x, idx, forms


def test_default_loss_is_identical_for_the_label_forms() -> None:
    x, idx, forms = _label_forms()
    logits = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    reference = F.cross_entropy(logits, idx)
    for name, t in forms.items():
        torch.testing.assert_close(default_loss(logits, t), reference, msg=name)


def test_default_loss_error_names_the_accepted_forms() -> None:
    logits = torch.zeros(4, 2, 8, 8)
    with pytest.raises(ShapeMismatchError, match=r"\(4, 1, 8, 8\) \(class indices with a channel"):
        default_loss(logits, torch.zeros(4, 3, 8, 8))


def test_default_loss_of_a_single_channel_output_is_bce_with_logits() -> None:
    x, idx, forms = _label_forms()
    z = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # sigmoid logits
    reference = F.binary_cross_entropy_with_logits(z, idx[:, None].float())
    for name, t in forms.items():
        torch.testing.assert_close(default_loss(z, t), reference, msg=name)
    logit = torch.tensor([[1.5], [-0.5], [0.0], [2.0]])  # classification (B, 1)
    labels = torch.tensor([1, 0, 1, 0])
    expected = F.binary_cross_entropy_with_logits(logit[:, 0], labels.float())
    torch.testing.assert_close(default_loss(logit, labels), expected)
    torch.testing.assert_close(default_loss(logit, labels[:, None].float()), expected)


def test_default_loss_refuses_labels_outside_the_output_classes() -> None:
    mask = torch.zeros(4, 1, 8, 8)
    mask[1, 0, 2, 2] = 255.0
    with pytest.raises(DataError, match=r"target label 255 .*num_classes=3"):
        default_loss(torch.zeros(4, 3, 8, 8), mask)
    with pytest.raises(DataError, match=r"target label 255 .*\[0, 1\]"):
        default_loss(torch.zeros(4, 1, 8, 8), mask)


def test_loss_for_uses_a_loss_callable_and_refuses_other_objects() -> None:
    outputs, targets = torch.randn(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    seen = []

    def my_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return (o - t).abs().mean()

    torch.testing.assert_close(
        loss_for(outputs, targets, my_loss, "taylor"), my_loss(outputs, targets)
    )
    assert seen[0] is targets  # the loader's targets, unchanged
    monai_losses = pytest.importorskip("monai.losses")
    dice = monai_losses.DiceLoss(sigmoid=True)
    torch.testing.assert_close(loss_for(outputs, targets, dice, "taylor"), dice(outputs, targets))
    with pytest.raises(ConfigError, match="got a str"):
        loss_for(outputs, targets, "dice", "taylor")
    with pytest.raises(ConfigError, match="scalar tensor"):
        loss_for(outputs, targets, lambda o, t: o - t, "taylor")


def test_class_aware_buckets_read_channel_first_and_one_hot_masks() -> None:
    masks = torch.zeros(3, 4, 4, dtype=torch.long)
    masks[0, :2] = 1
    masks[1, 0, 0] = 2
    inputs = torch.zeros(3, 1, 4, 4)
    expected = [1, 2, 0]
    assert image_buckets(masks[:, None].float(), inputs).tolist() == expected
    one_hot = F.one_hot(masks, 3).movedim(-1, 1).float()  # (3, 3, 4, 4)
    assert image_buckets(one_hot, inputs, num_classes=3).tolist() == expected
    assert image_buckets(F.one_hot(torch.tensor([1, 0, 1]), 2).float(), inputs).tolist() == [
        1,
        0,
        1,
    ]


@pytest.mark.parametrize("with_task", [True, False])
@pytest.mark.parametrize("name", ["taylor", "beta_rank"])
def test_criterion_scores_are_identical_for_the_label_forms(name: str, with_task: bool) -> None:
    torch.manual_seed(0)
    model = create_model("tiny_unet", norm="batch")
    x, _, forms = _label_forms()
    graph = build_graph(model, x[:1])
    task = SegmentationTask(2, loss="ce") if with_task else None
    kwargs = {"class_aware": True} if name == "beta_rank" else {}
    scores = {
        form: get_criterion(name, **kwargs)(graph, [(x[:2], t[:2]), (x[2:], t[2:])], task=task)
        for form, t in forms.items()
    }
    for form in ("channel_float", "one_hot"):
        assert scores[form].keys() == scores["indices"].keys()
        for key, s in scores["indices"].items():
            torch.testing.assert_close(scores[form][key], s, msg=f"{form} {key}")
