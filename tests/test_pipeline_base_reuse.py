"""A prune / compare run moved out of a ``medprune train`` folder (no ``--out``) prunes the
train run's finished ``model.pt`` when the settings match, instead of training the base again;
with other settings it retrains and says which setting differs. The moved run's resolved config
records the folder it really went to, and a rerun says it reuses that folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.compare import run_compare
from medprune.config import load_config
from medprune.pipeline import run_prune, run_train, train_model

TINY = {
    "progress": False,
    "data": {"kind": "synthetic_classification", "n_train": 32, "n_val": 16, "n_test": 16,
             "image_size": 16},
    "model.name": "tiny_cnn",
    "train.epochs": 1,
    "train.batch_size": 16,
    "prune.criterion": "l1",
    "prune.amount": 0.3,
    "prune.calibration_size": 8,
    "prune.finetune": {"epochs": 0},
    "measure.repeats": 1,
    "measure.warmup": 0,
    "measure.onnx": False,
    "compare.methods": ["l1"],
    "compare.targets": [0.3],
    "compare.finetune_control": False,
}  # fmt: skip


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """``medprune train`` with ``out: <tmp>/R``."""
    run_dir = tmp_path / "R"
    run_train(load_config(None, {**TINY, "out": str(run_dir)}), log=lambda _m: None)
    assert (run_dir / "model.pt").is_file()
    return run_dir


def _no_training(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every base training (``train_model`` of :mod:`medprune.pipeline.base`)."""
    calls: list[object] = []

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return train_model(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("medprune.pipeline.base.train_model", spy)
    return calls


def test_prune_after_train_uses_the_train_runs_model(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_training(monkeypatch)
    said: list[str] = []
    config = load_config(None, {**TINY, "out": str(trained)})
    run = run_prune(config, log=said.append)
    moved = trained / "prune-l1-0.3"
    assert run["out_dir"] == str(moved)
    assert calls == []  # the base was not trained again
    assert run["base_source"] == str(trained / "model.pt")
    assert not (moved / "base" / "model.pt").exists()
    assert f"using the base model of the train run in {trained} (model.pt)" in said
    train_run = json.loads((trained / "run.json").read_text())
    assert run["base"]["metrics"] == train_run["base"]["metrics"]  # the same weights

    # issue 2: the resolved config names the folder the run went to
    assert load_config(moved / "config.resolved.yaml").out == str(moved)
    assert load_config(trained / "config.resolved.yaml").out == str(trained)
    # ... and a second identical run says it reuses that folder
    said.clear()
    run_prune(config, log=said.append)
    moved_line = next(m for m in said if m.startswith(f"{trained} holds"))
    assert f"reusing {moved}, which holds this same prune run, finished (model.pt)" in moved_line
    assert "writing this prune run to" not in moved_line
    assert calls == []


def test_prune_with_other_train_settings_retrains_and_says_why(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_training(monkeypatch)
    said: list[str] = []
    config = load_config(None, {**TINY, "out": str(trained), "train.lr": 0.05})
    run = run_prune(config, log=said.append)
    assert len(calls) == 1
    assert run["base_source"] == "trained"
    old_lr = load_config(trained / "config.resolved.yaml").train.recipe.lr
    assert (
        f"retraining: the train run in {trained} has other settings (train.lr: {old_lr:g} -> "
        f"0.05); pass --checkpoint {trained / 'model.pt'} to use it anyway"
    ) in said


def test_compare_after_train_uses_the_train_runs_model(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_training(monkeypatch)
    said: list[str] = []
    result = run_compare(load_config(None, {**TINY, "out": str(trained)}), log=said.append)
    assert result.out_dir == trained / "compare"
    assert calls == []
    base = json.loads((result.out_dir / "results.jsonl").read_text().splitlines()[0])
    assert base["kind"] == "base" and base["source"] == str(trained / "model.pt")
    assert f"using the base model of the train run in {trained} (model.pt)" in said
    assert not (result.out_dir / "base" / "model.pt").exists()
    assert load_config(result.out_dir / "config.resolved.yaml").out == str(result.out_dir)
