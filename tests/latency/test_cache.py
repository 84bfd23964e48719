"""The on-disk latency cache: hits, invalidation, corrupt files, clear."""

from __future__ import annotations

import pytest
import torch
from latency_fakes import FakeRuntime

from medprune.graph import build_graph
from medprune.latency import LatencyCache, LatencyModel, clear_cache, default_cache_dir
from medprune.models import create_model


def _build(rt: FakeRuntime, cache_dir, shape=(1, 1, 16, 16)) -> LatencyModel:
    model = create_model("tiny_resnet")
    graph = build_graph(model, torch.randn(shape))
    return LatencyModel.build(graph, rt, cache=LatencyCache(cache_dir), progress=False)


def test_second_build_measures_nothing(tmp_path) -> None:
    rt = FakeRuntime()
    first = _build(rt, tmp_path)
    assert rt.timings > 0
    rt.timings = 0
    second = _build(rt, tmp_path)
    assert rt.timings == 0
    assert second.base_ms == pytest.approx(first.base_ms)


@pytest.mark.parametrize(
    "changed",
    [
        {"threads": 2},
        {"version": "2"},
    ],
)
def test_fingerprint_change_remeasures(tmp_path, changed) -> None:
    _build(FakeRuntime(), tmp_path)
    rt = FakeRuntime(**changed)
    _build(rt, tmp_path)
    assert rt.timings > 0


def test_other_runtime_and_shape_remeasure(tmp_path) -> None:
    _build(FakeRuntime(), tmp_path)

    class OtherRuntime(FakeRuntime):
        name = "other"

    other = OtherRuntime()
    _build(other, tmp_path)
    assert other.timings > 0
    rt = FakeRuntime()
    _build(rt, tmp_path, shape=(1, 1, 24, 24))
    assert rt.timings > 0


def test_corrupt_file_warns_and_is_rewritten(tmp_path) -> None:
    _build(FakeRuntime(), tmp_path)
    files = sorted(tmp_path.glob("*.json"))
    assert files
    files[0].write_text("{not json")
    rt = FakeRuntime()
    with pytest.warns(UserWarning, match="corrupt latency cache file"):
        _build(rt, tmp_path)
    assert rt.timings > 0
    rt2 = FakeRuntime()
    _build(rt2, tmp_path)  # rewritten: no warning, no measurement
    assert rt2.timings == 0


def test_clear_and_default_dir(tmp_path, monkeypatch) -> None:
    _build(FakeRuntime(), tmp_path)
    n = len(list(tmp_path.glob("*.json")))
    assert clear_cache(tmp_path) == n > 0
    assert not list(tmp_path.glob("*.json"))
    monkeypatch.setenv("MEDPRUNE_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "latency"
