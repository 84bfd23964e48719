"""Real timing, kept tiny: the torch and onnxruntime runtimes, the interleaved timer, prune()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import medprune
from medprune.graph import build_graph
from medprune.latency import LatencyCache, LatencyModel, get_runtime, interleaved_latency
from medprune.latency.table import TableSettings
from medprune.models import create_model

FAST = {"threads": 1, "repeats": 2, "warmup": 1, "calibration_repeats": 5, "calibrate": 2}


def test_interleaved_timer_two_models() -> None:
    small, big = nn.Conv2d(4, 4, 3), nn.Conv2d(4, 64, 3)
    rt = get_runtime("torch", threads=1)
    timings = interleaved_latency([small, big], torch.randn(1, 4, 32, 32), runtime=rt, repeats=5)
    assert len(timings) == 2 and all(t.median_ms > 0 and len(t.times_ms) == 5 for t in timings)
    assert timings[0].p10_ms <= timings[0].median_ms <= timings[0].p90_ms


def test_onnxruntime_table(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model = create_model("tiny_cnn")
    graph = build_graph(model, torch.randn(1, 1, 16, 16))
    rt = get_runtime("onnxruntime", "cpu", threads=1)
    settings = TableSettings(max_points=3, repeats=2, warmup=1)
    lat = LatencyModel.build(
        graph, rt, cache=LatencyCache(tmp_path), settings=settings, progress=False
    )
    assert lat.base_ms > 0 and lat.measured_ms is not None
    assert all(layer.entry.mode in ("separable", "diagonal") for layer in lat.layers)


def test_prune_end_to_end_on_torch(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = create_model("tiny_unet"), torch.randn(1, 1, 32, 32)
    result = medprune.prune(
        model, x, target_latency=0.3, latency_options={**FAST, "cache_dir": tmp_path},
        progress=False,
    )  # fmt: skip
    s = result.summary
    assert s["params_after"] < s["params_before"] and s["macs_after"] < s["macs_before"]
    assert result.model(x).shape == model(x).shape
    assert list(tmp_path.glob("*.json")), "the table was cached"
