"""Interleaved latency of several models in one run, and the noise figure of the run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from medprune.errors import ConfigError, ShapeMismatchError
from medprune.measure import (
    LatencyNoise,
    LatencyResult,
    export_onnx,
    interleaved_latency,
    latency_noise,
    measure_latency,
)
from medprune.measure.interleaved import round_orders


def _net(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 2),
    )


class Spy(nn.Module):
    """Appends its name to a shared log on every forward."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return self.lin(x)


def test_identical_models_agree_within_the_stated_noise() -> None:
    """A/A: a model, its deep copy and the same object again give medians the noise explains."""
    net = _net()
    x = torch.randn(1, 1, 24, 24)
    results = interleaved_latency(
        {"a": net, "copy": copy.deepcopy(net), "again": net}, x, repeats=40, warmup=3, threads=1
    )
    assert list(results) == ["a", "copy", "again"]
    noise = latency_noise(results, aa=("a", "copy"))
    assert noise.models == 3 and noise.repeats == 40 and noise.interleaved
    for name, r in results.items():
        assert r.interleaved and r.backend == "torch" and len(r.times_ms) == 40
        assert r.ci_low_ms <= r.median_ms <= r.ci_high_ms, name
        other = results["a"]
        diff = 100 * abs(r.median_ms - other.median_ms) / other.median_ms
        assert diff <= noise.noise_pct, (name, diff, noise.describe())
    assert noise.aa_diff_pct is not None and noise.aa_diff_pct <= noise.noise_pct


def test_runs_alternate_and_no_model_always_goes_first() -> None:
    log: list[str] = []
    names = ["m0", "m1", "m2"]
    models = {n: Spy(n, log) for n in names}
    for m in models.values():
        m.train()
    interleaved_latency(models, torch.randn(2, 4), repeats=9, warmup=2)
    checks, warm, timed = log[:3], log[3:9], log[9:]
    assert checks == names  # one checked forward each, before any timing
    assert len(warm) == 6 and len(timed) == 27
    rounds = [timed[i : i + 3] for i in range(0, 27, 3)]
    assert all(sorted(r) == names for r in rounds)  # every round runs every model once
    for block in (rounds[0:3], rounds[3:6], rounds[6:9]):  # each model once in each position
        for pos in range(3):
            assert sorted(r[pos] for r in block) == names
    assert len({tuple(r) for r in rounds}) > 3  # the permutation changes between blocks
    assert all(m.training for m in models.values())  # eval mode only while measuring


def test_round_orders_are_seeded_permutations() -> None:
    names = ["a", "b", "c", "d"]
    orders = round_orders(names, 8, seed=3)
    assert orders == round_orders(names, 8, seed=3)
    assert orders != round_orders(names, 8, seed=4)
    assert all(sorted(o) == names for o in orders)
    assert sorted(o[0] for o in orders[:4]) == names


def test_onnxruntime_backend_exports_once_and_takes_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import medprune.measure.export as export_module

    exports: list[Path] = []

    def spy(model: nn.Module, inputs: object, path: Path) -> Path:
        out = export_onnx(model, inputs, path)
        exports.append(Path(shutil.copy(out, tmp_path / f"copy{len(exports)}.onnx")))
        return out

    monkeypatch.setattr(export_module, "export_onnx", spy)
    net, x = _net(4), torch.randn(1, 1, 16, 16)
    before = torch.get_num_threads()
    results = interleaved_latency(
        {"module": net, "again": net}, x, backend="onnxruntime", repeats=6, warmup=1, threads=1
    )
    assert len(exports) == 1  # the same module is exported and loaded once
    assert torch.get_num_threads() == before
    for r in results.values():
        assert r.backend == "onnxruntime" and r.threads == 1 and r.interleaved
        assert 0 < r.min_ms <= r.median_ms < 10_000 and len(r.times_ms) == 6
    files = interleaved_latency({"file": exports[0]}, x, backend="onnxruntime", repeats=2)
    assert files["file"].backend == "onnxruntime" and len(exports) == 1
    noise = latency_noise(results, aa=("module", "again"))
    assert noise.backend == "onnxruntime" and noise.aa_diff_pct is not None


def test_bad_arguments_fail_clearly() -> None:
    net, x = _net(4), torch.randn(1, 1, 8, 8)
    with pytest.raises(ConfigError, match="Unknown latency backend 'onnx'. Did you mean"):
        interleaved_latency({"a": net}, x, backend="onnx")
    with pytest.raises(ConfigError, match="Did you mean 'torch'"):
        interleaved_latency({"a": net}, x, backend="troch")
    with pytest.raises(ConfigError, match="models must be a non-empty mapping"):
        interleaved_latency({}, x)
    with pytest.raises(ConfigError, match="repeats must be an int >= 1; got 0"):
        interleaved_latency({"a": net}, x, repeats=0)
    with pytest.raises(ConfigError, match="must be an nn.Module for backend='torch'"):
        interleaved_latency({"a": "model.onnx"}, x)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        interleaved_latency({"a": net}, x, backend="onnxruntime", device="cuda")
    with pytest.raises(ShapeMismatchError, match="in_channels=1"):
        interleaved_latency({"a": net}, torch.randn(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="aa names \\['b'\\] are not in the results"):
        latency_noise(interleaved_latency({"a": net}, x, repeats=2, warmup=0), aa=("a", "b"))
    with pytest.raises(ConfigError, match="at least one LatencyResult"):
        latency_noise({})


def test_noise_line_and_json() -> None:
    times = (1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.2, 0.8, 1.0)
    r = LatencyResult(1.0, 0.88, 1.12, 1.0, 0.8, times, 10, 1, 2, 1, "cpu", "torch", 0.9, 1.1)
    assert r.spread_pct == pytest.approx(12.0)
    assert r.noise_pct == pytest.approx(20.0)
    noise = latency_noise({"a": r, "b": r}, aa=("a", "b"))
    assert isinstance(noise, LatencyNoise) and noise.aa_diff_pct == 0.0
    assert noise.describe() == (
        "median of 10 runs of 2 models, 2 threads; run-to-run spread ±12.0%; "
        "differences below 20.0% are noise (A/A check: one model measured twice, 0.0% apart)"
    )
    assert json.loads(json.dumps(noise.to_dict()))["noise_pct"] == pytest.approx(20.0)
    single = measure_latency(_net(4), torch.randn(1, 1, 8, 8), repeats=7, warmup=0)
    d = single.to_dict()
    assert not single.interleaved and d["ci_low_ms"] <= d["median_ms"] <= d["ci_high_ms"]
    assert d["spread_pct"] >= 0 and d["noise_pct"] >= 0


def test_onnx_timing_sessions_do_not_spin(tmp_path: Path) -> None:
    """Sessions timed in turn must not leave spinning worker threads competing with the next one."""
    from medprune.measure import export_onnx
    from medprune.measure.latency import ort_session

    x = torch.randn(1, 1, 8, 8)
    path = export_onnx(torch.nn.Conv2d(1, 2, 3), x, tmp_path / "m.onnx")
    session, _ = ort_session(path, (x,), threads=1)
    entry = session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning"
    )
    assert entry == "0"
