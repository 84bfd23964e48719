"""Soft pruning (SFP, FPGM soft schedule): exact extraction and gradient masking."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

import medprune.graph
from medprune.data import make_synthetic_classification
from medprune.errors import ConfigError
from medprune.methods._masking import apply_selection
from medprune.methods.base import MethodContext, Target, get_method
from medprune.methods.soft import SoftPruningCallback, fpgm_soft, sfp
from medprune.models import create_model
from medprune.tasks import ClassificationTask, TrainCallback, TrainRecipe, make_loader, train

EXAMPLE = torch.zeros(2, 1, 16, 16)


def _context(recipe: TrainRecipe | None = None) -> MethodContext:
    data = make_synthetic_classification(32, image_size=16, minority_fraction=0.3, seed=0)
    return MethodContext(
        task=ClassificationTask(2),
        train_loader=make_loader(data, 16, shuffle=True, seed=0),
        recipe=recipe or TrainRecipe(epochs=2, optimizer="sgd", lr=0.05, weight_decay=1e-4),
        progress=False,
    )


def _capture_before_pruning(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    """Patch the engine so that a copy of the masked model is kept just before removal."""
    kept: list[torch.nn.Module] = []
    real = medprune.graph.prune_channels

    def capturing(model: torch.nn.Module, graph: Any, selection: Any, **kwargs: Any) -> Any:
        kept.append(copy.deepcopy(model))
        return real(model, graph, selection, **kwargs)

    monkeypatch.setattr(medprune.graph, "prune_channels", capturing)
    return kept


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_resnet"])
def test_masked_model_equals_extracted_model_float64(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _capture_before_pruning(monkeypatch)
    model = create_model(name, in_channels=1, num_classes=2)
    result = sfp(model, EXAMPLE, context=_context(), target=Target(ratio=0.5))
    assert result.summary["macs_after"] < result.summary["macs_before"]
    assert result.summary["params_removed"] > 0.2
    masked, compact = kept[0].double().eval(), result.model.double().eval()
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), masked(x), rtol=1e-10, atol=1e-10)
    assert result.summary["extraction_max_abs_diff"] < 1e-5
    assert len(result.history) == 3  # before training + after each of the 2 epochs
    assert sum(p.numel() for p in model.parameters()) == result.summary["params_before"]


class _ProducerWatch(TrainCallback):
    """Records, after every optimiser step, the largest |weight| of the masked filters."""

    def __init__(self, soft: SoftPruningCallback) -> None:
        self.soft = soft
        self.max_abs: list[float] = []

    def after_step(self, state: Any) -> None:
        values = [0.0]
        for key, idx in self.soft.selection_.items():
            group = self.soft.graph.group(key)
            for s in group.members("out", "weight"):
                t = group.tensor(s).detach()
                values.append(float(t.index_select(s.dim, s.positions(idx)).abs().max()))
        self.max_abs.append(max(values))


def _soft_run(mask_grads: bool, optimizer: str) -> list[float]:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    for module in model.modules():  # a positive BN shift (as after training): masked channels
        if isinstance(module, torch.nn.BatchNorm2d):  # then pass gradient through the ReLU
            torch.nn.init.constant_(module.bias, 0.1)
    graph = medprune.graph.build_graph(model, EXAMPLE)
    criterion = __import__("medprune.criteria", fromlist=["get_criterion"]).get_criterion("l2")

    def choose(g: Any, step: int) -> dict[str, torch.Tensor]:
        scores = criterion(g)
        return {k: torch.argsort(v)[: len(v) // 2] for k, v in scores.items()}

    soft = SoftPruningCallback(graph, choose, epochs=2, mask_grads=mask_grads,
                               reset_state=mask_grads)  # fmt: skip
    watch = _ProducerWatch(soft)
    ctx = _context(TrainRecipe(epochs=2, optimizer=optimizer, lr=0.05, weight_decay=1e-3))
    train(model, ctx.task, ctx.train_loader, ctx.recipe, callbacks=[soft, watch], progress=False)
    return watch.max_abs


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_gradient_masking_keeps_pruned_filters_at_zero(optimizer: str) -> None:
    assert max(_soft_run(True, optimizer)) == 0.0
    # plain SFP: masked filters keep training and move away from zero
    assert max(_soft_run(False, optimizer)) > 0.0


def test_masked_equals_extracted_on_a_unet_with_concat_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medprune.data import make_synthetic_segmentation
    from medprune.tasks import SegmentationTask

    kept = _capture_before_pruning(monkeypatch)
    data = make_synthetic_segmentation(8, image_size=16, seed=0)
    ctx = MethodContext(
        task=SegmentationTask(2),
        train_loader=make_loader(data, 4, shuffle=True, seed=0),
        recipe=TrainRecipe(epochs=1, optimizer="adam", lr=1e-2),
        progress=False,
    )
    model = create_model("tiny_unet", in_channels=1, out_channels=2)
    result = fpgm_soft(model, torch.zeros(1, 1, 16, 16), context=ctx, target=Target(macs=0.4))
    assert result.summary["macs_removed"] == pytest.approx(0.4, abs=0.05)
    assert result.summary["inexact_groups"] == []
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            result.model.double().eval()(x), kept[0].double().eval()(x), rtol=1e-10, atol=1e-10
        )
    assert result.plan is not None and len(result.plan.steps) == 1


def test_fpgm_soft_registered_and_runs_without_training(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_method("fpgm_soft") is fpgm_soft and get_method("sfp") is sfp
    kept = _capture_before_pruning(monkeypatch)
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    result = fpgm_soft(model, EXAMPLE, context=_context(TrainRecipe(epochs=0)),
                       target={"ratio": 0.25}, distance="cos")  # fmt: skip
    assert result.summary["pruning_steps"] == 1
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), kept[0].eval()(x))


def test_apply_selection_producer_scope_leaves_norm_shift() -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    graph = medprune.graph.build_graph(model, EXAMPLE)
    group = graph.prunable_groups()[0]
    norms_before = [group.tensor(s).clone() for s in group.members("per_channel")]
    apply_selection(graph, {group.key: torch.tensor([0, 1])}, scope="producer")
    for s in group.members("out", "weight"):
        assert torch.all(group.gather(s)[:2] == 0) and group.gather(s)[2:].abs().sum() > 0
    for s, before in zip(group.members("per_channel"), norms_before, strict=True):
        torch.testing.assert_close(group.tensor(s), before)


def test_options_are_validated_before_training() -> None:
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match="Did you mean 'fpgm'"):
        sfp(model, EXAMPLE, context=_context(), target=Target(ratio=0.5), criterion="fpgn")
    with pytest.raises(ConfigError, match="interval must be an integer >= 1"):
        sfp(model, EXAMPLE, context=_context(), target=Target(ratio=0.5), interval=0)
    with pytest.raises(ConfigError, match="mask_scope must be one of"):
        sfp(model, EXAMPLE, context=_context(), target=Target(ratio=0.5), mask_scope="all")


@pytest.mark.data
def test_sfp_on_pneumoniamnist(data_dir: Path) -> None:
    from medprune.data import load_medmnist, random_subset
    from medprune.methods.guard import RecallGuard

    path = data_dir / "pneumoniamnist" / "pneumoniamnist.npz"
    train_set = random_subset(load_medmnist(path, "train"), 256, seed=0)
    val_set = random_subset(load_medmnist(path, "val"), 128, seed=0)
    task = ClassificationTask(2)
    val_loader = make_loader(val_set, 64, shuffle=False)
    ctx = MethodContext(
        task=task,
        train_loader=make_loader(train_set, 32, shuffle=True, seed=0),
        val_loader=val_loader,
        recipe=TrainRecipe(epochs=2, optimizer="adam", lr=3e-3),
        guard=RecallGuard(task, val_loader, important_class=0, max_recall_drop=1.0),
        progress=False,
    )
    model = create_model("tiny_cnn", in_channels=1, num_classes=2)
    result = sfp(model, torch.zeros(1, 1, 28, 28), context=ctx, target=Target(macs=0.5))
    assert result.summary["macs_removed"] == pytest.approx(0.5, abs=0.1)
    assert result.summary["extraction_max_abs_diff"] < 1e-4
    guard = result.summary["guard"]
    assert guard is not None and guard["ok"] and 0.0 <= guard["recall"] <= 1.0
