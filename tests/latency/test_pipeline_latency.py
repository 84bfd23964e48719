"""``prune.target: latency`` through the pipeline (config -> Target -> planner -> run folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medprune.config import load_config
from medprune.errors import ConfigError
from medprune.pipeline import run_prune

TINY = {
    "data": {"kind": "synthetic_classification", "n_train": 32, "n_val": 16, "n_test": 16,
             "image_size": 16},
    "model.name": "tiny_cnn",
    "train.epochs": 1,
    "train.batch_size": 16,
    "prune.criterion": "l1",
    "prune.target": "latency",
    "prune.amount": 0.3,
    "prune.finetune": {"epochs": 0},
    "measure.threads": 1,
    "measure.repeats": 1,
    "measure.warmup": 0,
    "measure.onnx": False,
    "progress": False,
}  # fmt: skip


def test_run_prune_with_a_latency_target(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    run = run_prune(load_config(None, TINY), out=tmp_path / "run")
    pruned = run["pruned"]
    assert (pruned["target_kind"], pruned["target"]) == ("latency", 0.3)
    assert pruned["summary"]["params_after"] < pruned["summary"]["params_before"]
    assert list((tmp_path / "cache" / "latency").glob("*.json"))


def test_a_soft_method_refuses_a_latency_target(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    config = load_config(None, {**TINY, "prune.method": "sfp"})
    with pytest.raises(ConfigError, match="'sfp' cannot honour it"):
        run_prune(config, out=tmp_path / "run")
    assert not (tmp_path / "run" / "base").exists()  # refused before any training


def test_run_record_states_the_measured_latency_cut(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    config = load_config(
        None, {**TINY, "prune.options": {"plan_kwargs": {"latency": {"tolerance": 0.2}}}}
    )
    run = run_prune(config, out=tmp_path / "run")
    lat = run["pruned"]["summary"]["latency"]
    assert lat["goal"] == 0.3 and 0.0 < lat["measured_cut"] < 1.0
    assert lat["base_ms"] > 0 and lat["pruned_ms"] > 0
    step = run["history"][-1]["latency"]
    assert abs(step["measured"] - 0.3) <= 0.2 or step["missed"]  # the user's tolerance is used


def test_compare_refuses_methods_without_a_latency_plan_before_training(tmp_path: Path) -> None:
    from medprune.compare import run_compare

    config = load_config(None, {**TINY, "compare.methods": ["l1", "sfp", "lottery"]})
    with pytest.raises(ConfigError, match=r"'sfp', 'lottery' cannot honour it.*Drop them"):
        run_compare(config, out=tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "base").exists()


def test_bad_latency_settings_fail_before_training(tmp_path: Path) -> None:
    bad = {"prune.options": {"plan_kwargs": {"latency": {"tolerence": 0.1}}}}
    with pytest.raises(
        ConfigError, match=r"plan_kwargs.latency has unknown key\(s\) \['tolerence'\]"
    ):
        run_prune(load_config(None, {**TINY, **bad}), out=tmp_path / "a")
    assert not (tmp_path / "a" / "base").exists()
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ConfigError, match="needs CUDA"):
            run_prune(
                load_config(None, {**TINY, "prune.latency_device": "cuda"}), out=tmp_path / "b"
            )
        assert not (tmp_path / "b" / "base").exists()
    run_prune(load_config(None, {**TINY, "prune.latency_device": "auto", "train.epochs": 0,
                                 "prune.latency_refresh": True}), out=tmp_path / "c")  # fmt: skip
