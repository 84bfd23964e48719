"""The latency planner on a synthetic, known cost table (FakeRuntime): no real timing."""

from __future__ import annotations

import pytest
import torch
from latency_fakes import FakeRuntime
from torch import nn

import medprune
from medprune.criteria import get_criterion
from medprune.graph import build_graph, prune_channels
from medprune.latency import LatencyOptions, build_latency_model, width_grid
from medprune.methods.base import Target
from medprune.methods.plan import plan_pruning
from medprune.models import create_model, list_models

CASES = [  # residual add, concat skips + transposed conv, 3D, grouped / depthwise, flatten->linear...
    (name, (1, 1, 8, 8, 8) if name.endswith("3d") else (1, 1, 16, 16))
    for name in list_models("tiny_*")
]


def test_width_grid_has_full_width_and_friendly_multiples() -> None:
    assert width_grid(64) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert width_grid(6) == [1, 2, 3, 4, 5, 6]
    g = width_grid(512)
    assert g[-1] == 512 and len(g) <= 8 and all(w % 32 == 0 for w in g)
    assert width_grid(100)[-1] == 100 and all(w % 8 == 0 for w in width_grid(100)[:-1])


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_prediction_is_exact_on_known_table(name: str, shape: tuple[int, ...], tmp_path) -> None:
    """Predicted latency of a plan == the synthetic latency of the physically pruned model."""
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(shape)
    graph = build_graph(model, x)
    rt = FakeRuntime()
    opts = LatencyOptions(runtime=rt, cache_dir=tmp_path, calibrate=0, progress=False)
    lat = build_latency_model(graph, opts)
    assert lat.base_ms == pytest.approx(rt.model_ms(model, (x,)), rel=1e-9)
    plan = plan_pruning(graph, get_criterion("l1")(graph), Target(latency=0.4), latency=opts)
    assert plan, "something must be pruned"
    kept = {k: graph.group(k).n_channels - len(v) for k, v in plan.items()}
    predicted = lat.predict(kept)
    prune_channels(model, graph, plan)
    real = rt.model_ms(model, (x,))
    assert predicted == pytest.approx(real, rel=1e-6)
    assert 1.0 - real / lat.base_ms >= 0.4 - opts.tolerance


class Wide(nn.Module):
    """Three 3x3 convs of 32 channels: room for step-function behaviour."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 2, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_planner_prefers_widths_where_latency_drops(tmp_path) -> None:
    """With a step function of 8-channel tiles, every kept width is a multiple of 8."""
    torch.manual_seed(0)
    model, x = Wide(), torch.randn(1, 1, 8, 8)
    graph = build_graph(model, x)
    rt = FakeRuntime(quantum=8)
    opts = LatencyOptions(runtime=rt, cache_dir=tmp_path, calibrate=0, progress=False)
    plan = plan_pruning(graph, get_criterion("l1")(graph), Target(latency=0.5), latency=opts)
    kept = [graph.group(k).n_channels - len(v) for k, v in plan.items()]
    assert kept and all(k % 8 == 0 for k in kept), kept
    base = rt.model_ms(model, (x,))
    prune_channels(model, graph, plan)
    assert 1.0 - rt.model_ms(model, (x,)) / base >= 0.5 - opts.tolerance


def test_calibration_hits_target_within_tolerance(tmp_path) -> None:
    """With measurement (the fake's model latency), the measured cut lands within tolerance."""
    torch.manual_seed(0)
    model, x = create_model("tiny_unet"), torch.randn(1, 1, 16, 16)
    rt = FakeRuntime()
    opts = {"cache_dir": tmp_path, "calibrate": 3, "tolerance": 0.05}
    result = medprune.prune(
        model, x, target_latency=0.35, latency_runtime=rt, latency_options=opts, progress=False
    )
    cut = 1.0 - rt.model_ms(result.model, (x,)) / rt.model_ms(model, (x,))
    assert abs(cut - 0.35) <= 0.05 + 0.03  # greedy granularity on a tiny model
    assert result.summary["target"] == {"latency": 0.35}
    (step,) = result.history
    measured = [h["measured"] for h in step["latency"]["history"]]
    assert 1 <= len(measured) <= 3 and min(abs(m - 0.35) for m in measured) <= 0.08


def test_iterative_schedule_on_latency(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = create_model("tiny_resnet"), torch.randn(1, 1, 16, 16)
    rt = FakeRuntime()
    opts = {"cache_dir": tmp_path, "calibrate": 2, "tolerance": 0.04}
    result = medprune.prune(
        model,
        x,
        target_latency=0.4,
        iterative_steps=2,
        latency_runtime=rt,
        latency_options=opts,
        progress=False,
    )
    assert result.summary["steps"] == 2
    cut = 1.0 - rt.model_ms(result.model, (x,)) / rt.model_ms(model, (x,))
    assert cut >= 0.4 - 0.08


def test_unreachable_latency_target_names_the_reachable_cut(tmp_path) -> None:
    model, x = create_model("tiny_cnn"), torch.randn(1, 1, 16, 16)
    graph = build_graph(model, x)
    opts = LatencyOptions(runtime=FakeRuntime(), cache_dir=tmp_path, calibrate=0)
    with pytest.raises(medprune.errors.ConfigError, match="unreachable.*largest latency cut"):
        plan_pruning(
            graph, get_criterion("l1")(graph), Target(latency=0.95), latency=opts,
            max_per_layer=0.2,
        )  # fmt: skip
