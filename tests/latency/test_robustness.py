"""What a user meets on a real machine: devices by name, a busy machine, an edited model, a
damaged or unwritable cache, options with typos, and the measured result in the summary."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from latency_fakes import FakeRuntime
from torch import nn

import medprune
from medprune.errors import ConfigError
from medprune.graph import build_graph
from medprune.latency import LatencyCache, LatencyModel, LatencyOptions, get_runtime
from medprune.latency.table import TableSettings
from medprune.methods.api import default_latency_device
from medprune.models import create_model

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


class CountingFake(FakeRuntime):
    """The fake runtime, also counting whole-model (interleaved) timings."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.model_timings = 0

    def time_interleaved(self, models, inputs, repeats):
        self.model_timings += 1
        return super().time_interleaved(models, inputs, repeats)


class Toggled(nn.Module):
    """Same modules (same ``repr``) whatever ``heavy`` is; ``heavy`` changes what forward does."""

    def __init__(self, heavy: bool) -> None:
        super().__init__()
        self.heavy = heavy
        self.a, self.b = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        if self.heavy:
            for _ in range(5):
                y = torch.tanh(y)
        return self.b(y)


def _build(rt, cache, model=None, settings=None) -> LatencyModel:
    model = model if model is not None else create_model("tiny_resnet")
    graph = build_graph(model, torch.randn(1, 1, 16, 16))
    return LatencyModel.build(graph, rt, cache=cache, settings=settings, progress=False)


# ---- devices ------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["gpu", "tpu:0", "cuda:x"])
def test_unknown_device_names_the_allowed_ones(device: str) -> None:
    with pytest.raises(ConfigError, match=r"'cpu', 'cuda', 'cuda:N' or 'auto'.*--latency-device"):
        LatencyOptions(device=device)


def test_auto_device_resolves_like_the_run_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_runtime("torch", "auto").device.type == expected
    assert get_runtime("onnxruntime", "auto").device.type == "cpu"  # ONNX Runtime: CPU only
    assert default_latency_device("torch", "auto", "cpu") == expected
    assert default_latency_device("onnxruntime", "auto", "cpu") == "cpu"
    LatencyOptions(device="auto")  # no error


@NO_CUDA
def test_cuda_without_cuda_is_a_config_error() -> None:
    model, x = create_model("tiny_cnn"), torch.randn(1, 1, 16, 16)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        medprune.prune(model, x, target_latency=0.3, device="cuda", progress=False)
    with pytest.raises(ConfigError, match="needs CUDA.*--latency-device cpu"):
        medprune.prune(model, x, target_latency=0.3, latency_device="cuda", progress=False)


# ---- options ------------------------------------------------------------------------------
def test_latency_options_typos_and_clashes_are_refused() -> None:
    model, x = create_model("tiny_cnn"), torch.randn(1, 1, 16, 16)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['tolerence'\].*'tolerance'"):
        medprune.prune(model, x, target_latency=0.3, latency_options={"tolerence": 0.1})
    with pytest.raises(ConfigError, match="give the latency runtime as latency_runtime="):
        medprune.prune(model, x, target_latency=0.3, latency_options={"runtime": "onnxruntime"})
    with pytest.raises(ConfigError, match="apply to target_latency= only"):
        medprune.prune(model, x, target_macs=0.3, latency_options={"threads": 1})


# ---- cache --------------------------------------------------------------------------------
def test_an_edited_forward_is_measured_afresh(tmp_path) -> None:
    """``repr(model)`` is the same; the traced ops are not, so the whole-model timing is redone."""
    cache = LatencyCache(tmp_path)
    rt = CountingFake()
    _build(rt, cache, Toggled(heavy=False))
    _build(rt, cache, Toggled(heavy=False))
    assert rt.model_timings == 1  # the second build read the cache
    _build(rt, cache, Toggled(heavy=True))
    assert rt.model_timings == 2


def test_more_repeats_measure_new_tables(tmp_path) -> None:
    _build(FakeRuntime(), LatencyCache(tmp_path))
    rt = FakeRuntime()
    _build(rt, LatencyCache(tmp_path), settings=TableSettings(repeats=30))
    assert rt.timings > 0


def test_damaged_value_warns_and_is_remeasured(tmp_path) -> None:
    _build(FakeRuntime(), LatencyCache(tmp_path))
    damaged = 0
    for path in tmp_path.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data["value"], dict) and "values" in data["value"]:
            data["value"]["values"] = "garbage"
            path.write_text(json.dumps(data))
            damaged += 1
    assert damaged
    rt = FakeRuntime()
    with pytest.warns(UserWarning, match="corrupt latency cache file"):
        _build(rt, LatencyCache(tmp_path))
    assert rt.timings > 0


def test_unwritable_cache_warns_once_and_goes_on(tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = LatencyCache(blocker / "latency")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lat = _build(FakeRuntime(), cache)
    messages = [
        str(w.message) for w in caught if "cannot write the latency cache" in str(w.message)
    ]
    assert len(messages) == 1 and "MEDPRUNE_CACHE_DIR" in messages[0]
    assert lat.base_ms > 0 and not cache.writable


def test_refresh_remeasures_and_rewrites(tmp_path) -> None:
    _build(FakeRuntime(), LatencyCache(tmp_path))
    files = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    rt = FakeRuntime()
    _build(rt, LatencyCache(tmp_path, refresh=True))
    assert rt.timings > 0
    assert any(p.stat().st_mtime_ns != t for p, t in files.items())
    rt2 = FakeRuntime()
    _build(rt2, LatencyCache(tmp_path))
    assert rt2.timings == 0


def test_noisy_timings_are_retried_used_and_not_cached(tmp_path) -> None:
    quiet = FakeRuntime()
    _build(quiet, LatencyCache(tmp_path / "quiet"))
    busy = FakeRuntime(spread=80.0)  # every timing reports an 80% spread
    with pytest.warns(UserWarning, match="stayed noisy"):
        lat = _build(busy, LatencyCache(tmp_path))
    # noisy points are timed twice (and a layer shape seen again is not read from the cache);
    # points under NOISY_SPREAD_MS of absolute jitter count as quiet (the linear head here)
    assert busy.timings > quiet.timings
    assert lat.base_ms > 0

    def tables(folder):
        return [p for p in folder.glob("*.json") if '"values"' in p.read_text()]

    assert len(tables(tmp_path)) < len(tables(tmp_path / "quiet"))  # noisy tables not stored


# ---- the result says what was achieved -------------------------------------------------------
def test_summary_states_the_measured_cut(tmp_path) -> None:
    model, x = create_model("tiny_unet"), torch.randn(1, 1, 16, 16)
    rt = FakeRuntime()
    result = medprune.prune(
        model, x, target_latency=0.35, latency_runtime=rt,
        latency_options={"cache_dir": tmp_path, "tolerance": 0.05}, progress=False,
    )  # fmt: skip
    lat = result.summary["latency"]
    true_cut = 1.0 - rt.model_ms(result.model, (x,)) / rt.model_ms(model, (x,))
    assert lat["goal"] == 0.35
    assert lat["measured_cut"] == pytest.approx(true_cut, abs=1e-9)
    assert lat["base_ms"] > lat["pruned_ms"] > 0
    assert lat["missed"] == (abs(true_cut - 0.35) > 0.05)
