"""MFP-like meta-attribute pruning: one candidate per criterion, the best one applied and logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medprune.criteria import get_criterion
from medprune.data import make_synthetic_classification
from medprune.errors import ConfigError
from medprune.methods.base import MethodContext, Target, get_method
from medprune.methods.mfp import (
    ATTRIBUTES,
    DEFAULT_CRITERIA,
    get_attribute,
    masked,
    mfp,
    register_attribute,
)
from medprune.models import create_model
from medprune.tasks import ClassificationTask, TrainRecipe, make_loader

EXAMPLE = torch.zeros(2, 1, 16, 16)


def _context(events: list[dict[str, Any]], epochs: int = 2) -> MethodContext:
    data = make_synthetic_classification(32, image_size=16, minority_fraction=0.3, seed=0)
    return MethodContext(
        task=ClassificationTask(2),
        train_loader=make_loader(data, 16, shuffle=True, seed=0),
        calibration=make_loader(data, 8, shuffle=False),
        recipe=TrainRecipe(epochs=epochs, optimizer="sgd", lr=0.05),
        progress=False,
        log=events.append,
    )


def test_mfp_logs_the_winner_and_every_candidate_value() -> None:
    events: list[dict[str, Any]] = []
    result = mfp(create_model("tiny_cnn", in_channels=1, num_classes=2), EXAMPLE,
                 context=_context(events), target=Target(ratio=0.5))  # fmt: skip
    assert get_method("mfp") is mfp
    assert len(result.history) == 3
    for entry in result.history:
        assert set(entry["values"]) == set(DEFAULT_CRITERIA)
        assert entry["winner"] == min(entry["values"], key=entry["values"].get)
        assert all(v > 0 for v in entry["values"].values())  # a loss per candidate
    choices = [e for e in events if e["event"] == "mfp_choice"]
    assert [c["winner"] for c in choices] == [h["winner"] for h in result.history]
    assert sum(result.summary["criterion_wins"].values()) == 3
    assert result.summary["extraction_max_abs_diff"] < 1e-5


def test_custom_attribute_decides_and_is_computed_per_candidate() -> None:
    calls: list[dict[str, torch.Tensor]] = []
    l2 = get_criterion("l2")

    def prefers_l2(
        graph: Any, selection: dict[str, torch.Tensor], batches: list, task: Any
    ) -> float:
        calls.append(selection)
        scores = l2(graph)
        # the lowest-l2 channels of each group, as many as the plan removes there (the head
        # input group loses at most plan_pruning's head_input_max, not half)
        expected = {k: torch.sort(torch.argsort(scores[k], stable=True)[: len(v)]).values
                    for k, v in selection.items()}  # fmt: skip
        same = all(torch.equal(selection[k], expected[k]) for k in expected)
        return 1.0 if same else 0.0

    register_attribute("test_prefers_l2", higher_is_better=True, needs_data=False, override=True)(
        prefers_l2
    )
    try:
        result = mfp(create_model("tiny_cnn", in_channels=1, num_classes=2), EXAMPLE,
                     context=_context([], epochs=0), target=Target(ratio=0.5),
                     criteria=["fpgm:cos", "l2"], attribute="test_prefers_l2")  # fmt: skip
    finally:
        ATTRIBUTES._entries.pop("test_prefers_l2", None)
    assert len(calls) == 2  # one pruning step (no training), two candidates
    assert result.history[0]["winner"] == "l2"
    assert result.history[0]["values"]["l2"] == 1.0


def test_norm_statistics_is_data_free_and_masked_restores() -> None:
    import medprune.graph

    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    graph = medprune.graph.build_graph(model, EXAMPLE)
    group = graph.prunable_groups()[0]
    for s in group.members("per_channel", "weight"):
        group.tensor(s).data = torch.arange(1.0, group.n_channels + 1)  # gamma = 1..n
    attr = get_attribute("norm_statistics")
    assert not attr.needs_data and not attr.higher_is_better
    low = attr.fn(graph, {group.key: torch.tensor([0])}, [], None)
    high = attr.fn(graph, {group.key: torch.tensor([group.n_channels - 1])}, [], None)
    assert 0.0 < low < high
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with masked(graph, {group.key: torch.tensor([0, 1])}):
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_calibration_accuracy_reads_a_single_sigmoid_channel_and_channel_first_labels() -> None:
    import medprune.graph

    torch.manual_seed(0)
    model = create_model("tiny_unet", in_channels=1, out_channels=1).eval()
    x = torch.randn(2, 1, 16, 16)
    graph = medprune.graph.build_graph(model, x)
    with torch.no_grad():
        fg = (model(x) > 0).float()  # (B, 1, H, W): the model's own foreground mask
    attr = get_attribute("calibration_accuracy")
    assert attr.fn(graph, {}, [(x, fg)], None) == 1.0
    assert attr.fn(graph, {}, [(x, 1.0 - fg)], None) == 0.0


def test_options_are_validated() -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match="Unknown meta-attribute 'calibration_los'"):
        mfp(model, EXAMPLE, context=_context([]), target=Target(ratio=0.5),
            attribute="calibration_los")  # fmt: skip
    with pytest.raises(ConfigError, match="criteria must be a non-empty list"):
        mfp(model, EXAMPLE, context=_context([]), target=Target(ratio=0.5), criteria="l1")
    with pytest.raises(ConfigError, match="only 'fpgm' takes a distance"):
        mfp(model, EXAMPLE, context=_context([]), target=Target(ratio=0.5), criteria=["l1:cos"])


@pytest.mark.data
def test_mfp_on_breastmnist(data_dir: Path) -> None:
    from medprune.data import calibration_loader, load_medmnist, random_subset

    path = data_dir / "breastmnist" / "breastmnist.npz"
    train_set = random_subset(load_medmnist(path, "train"), 192, seed=0)
    events: list[dict[str, Any]] = []
    ctx = MethodContext(
        task=ClassificationTask(2),
        train_loader=make_loader(train_set, 32, shuffle=True, seed=0),
        calibration=calibration_loader(train_set, 32, batch_size=16),
        recipe=TrainRecipe(epochs=2, optimizer="adam", lr=3e-3),
        progress=False,
        log=events.append,
    )
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    result = mfp(model, torch.zeros(1, 1, 28, 28), context=ctx, target=Target(macs=0.5))
    assert result.summary["macs_removed"] == pytest.approx(0.5, abs=0.1)
    assert len([e for e in events if e["event"] == "mfp_choice"]) == 3
