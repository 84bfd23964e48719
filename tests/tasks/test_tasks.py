"""Task objects: factory, argument checks, predictions, evaluation on a loader, the recipe."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medprune.errors import ConfigError, DataError
from medprune.tasks import (
    ClassificationTask,
    SegmentationTask,
    TrainRecipe,
    create_task,
    evaluate,
    make_loader,
    split_batch,
    train,
)


def test_create_task_by_name() -> None:
    task = create_task("classification", num_classes=3, loss="focal", focal_gamma=1.0)
    assert isinstance(task, ClassificationTask) and task.primary_metric == "balanced_accuracy"
    assert task.config()["focal_gamma"] == 1.0
    seg = create_task("segmentation", num_classes=2, spatial_dims=3)
    assert isinstance(seg, SegmentationTask) and seg.primary_metric == "dice"
    with pytest.raises(ConfigError, match="Did you mean 'segmentation'"):
        create_task("segmentaton", num_classes=2)
    with pytest.raises(ConfigError, match="invalid arguments for task 'classification'"):
        create_task("classification", num_classes=2, colour="red")
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2"):
        ClassificationTask(1)


def test_predictions() -> None:
    task = SegmentationTask(3)
    logits = torch.randn(2, 3, 4, 4)
    probs = task.predict_proba(logits)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 4, 4))
    assert torch.equal(task.predict(logits), logits.argmax(1))


def test_evaluate_classification_loader() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g)
    y = (x[:, 0] > 0.8).long()
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]]))
        model.bias.copy_(torch.tensor([0.8, -0.8]))  # predicts class 1 iff x0 > 0.8: perfect
    task = ClassificationTask(2)
    loader = make_loader(TensorDataset(x, y), 6, shuffle=False)
    m = evaluate(model, task, loader)
    assert m["accuracy"] == 1.0 and m["auc_roc"] == 1.0 and m["n"] == 20
    assert m["minority_class"] == int(y.float().mean() < 0.5) and m["minority_recall"] == 1.0
    with torch.no_grad():
        expected_loss = float(nn.functional.cross_entropy(model(x), y))
    assert m["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert model.training  # train mode restored


def test_split_batch_accepts_pairs_and_monai_dicts() -> None:
    x, y = torch.zeros(1), torch.ones(1)
    assert split_batch((x, y))[1] is y and split_batch({"image": x, "label": y})[0] is x
    with pytest.raises(DataError, match="'image' and 'label'"):
        split_batch({"img": x})


def test_non_finite_loss_names_the_step() -> None:
    class Nan(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * math.nan

    loader = make_loader(TensorDataset(torch.zeros(4, 3), torch.zeros(4).long()), 2, shuffle=True)
    with pytest.raises(ConfigError, match="loss became nan at epoch 1, step 1"):
        train(Nan(), ClassificationTask(2), loader, TrainRecipe(epochs=1), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad_clip": 0.0}, "grad_clip must be a positive number"),
        ({"gamma": -1.0}, "gamma must be a positive number"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"step_size": 0}, "step_size must be an integer >= 1"),
    ],
)
def test_recipe_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainRecipe(**kwargs)  # type: ignore[arg-type]
