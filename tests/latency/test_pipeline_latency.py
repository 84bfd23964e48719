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
    with pytest.raises(ConfigError, match="'sfp' cannot honour prune.target: latency"):
        run_prune(config, out=tmp_path / "run")
