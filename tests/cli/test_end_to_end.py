"""End to end: ``medprune demo --fast``, and ``medprune prune`` on the real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.cli.__main__ import main
from medprune.report import read_jsonl


def test_demo_fast_writes_the_full_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "| base (unpruned) |" in stdout and "demo finished" in stdout
    records = read_jsonl(out / "results.jsonl")
    assert records[0]["kind"] == "base"
    runs = [r for r in records if r["kind"] == "run"]
    assert [r["name"] for r in runs] == ["finetune_only", "l1", "beta_rank"]
    control, runs = runs[0], runs[1:]
    assert control["summary"]["macs_removed"] == 0.0
    assert control["measurement"]["macs"] == records[0]["measurement"]["macs"]
    for r in runs:
        assert r["status"] == "ok", r.get("error")
        assert 0.4 <= r["summary"]["macs_removed"] <= 0.6  # the 50% MACs budget was met
        assert r["measurement"]["macs"] < records[0]["measurement"]["macs"]
    md = (out / "report.md").read_text()
    assert "| oneshot (l1) | 50% |" in md and "| oneshot (beta_rank) | 50% |" in md
    assert "medprune demo --fast" in md and "## Summary" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4


def _prune(tmp_path: Path, data: dict, model: list[str], extra: list[str]) -> dict:
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"data": data}))  # JSON is YAML
    out = tmp_path / "out"
    argv = [
        "prune", "--config", str(config), "--criterion", "beta_rank", "--target-macs", "0.5",
        "--out", str(out), "--epochs", "1", "--finetune-epochs", "1", "--calibration-size", "16",
        "--set", "measure.repeats=2", "--set", "measure.warmup=1", "--set", "measure.onnx=false",
        "--no-progress", *model, *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert (out / "model.pt").is_file() and (out / "plan.json").is_file()
    assert (out / "report.html").is_file()
    removed = run["pruned"]["summary"]["macs_removed"]
    assert 0.45 <= removed <= 0.55, removed
    return run


@pytest.mark.data
def test_prune_pneumoniamnist(tmp_path: Path, data_dir: Path) -> None:
    data = {
        "kind": "medmnist",
        "path": str(data_dir / "pneumoniamnist" / "pneumoniamnist.npz"),
        "max_train": 256,
        "max_val": 64,
        "max_test": 128,
    }
    model = ["--model", "small_resnet", "--set", "model.kwargs.base_width=8"]
    run = _prune(tmp_path, data, model, ["--set", "task.class_weights=balanced"])
    assert run["base"]["class_names"][0] == "normal" or len(run["base"]["class_names"]) == 2
    per_class = run["pruned"]["metrics"]["per_class"]
    assert sum(row["support"] for row in per_class) == 128


@pytest.mark.data
def test_prune_kvasir_seg(tmp_path: Path, data_dir: Path) -> None:
    data = {
        "kind": "segmentation_folder",
        "path": str(data_dir / "kvasir-seg"),
        "image_size": 64,
        "max_train": 32,
        "max_val": 8,
        "max_test": 8,
    }
    model = [
        "--model",
        "unet",
        "--set",
        "model.kwargs.base_channels=8",
        "--set",
        "model.kwargs.depth=3",
    ]
    run = _prune(tmp_path, data, model, ["--set", "train.batch_size=8"])
    assert run["pruned"]["task"] == "segmentation"
    assert 0.0 <= run["pruned"]["metrics"]["dice"] <= 1.0
