"""The comparison grid: resume after an interruption without redoing finished runs, durable
appends, failures recorded, mean and std over seeds."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from medprune.compare import GridCell, append_record, make_grid, run_compare, run_grid, summarize
from medprune.config import load_config
from medprune.errors import ConfigError
from medprune.methods.base import METHODS, PruneResult, register_method
from medprune.report import read_jsonl


def test_grid_order_and_duplicates() -> None:
    cells = make_grid(["l1", "hrank"], [0.3, 0.5], [0, 1])
    assert [c.key for c in cells[:4]] == ["l1@0.3#0", "hrank@0.3#0", "l1@0.5#0", "hrank@0.5#0"]
    assert len(cells) == 8
    with pytest.raises(ConfigError, match="duplicates"):
        make_grid(["l1", "l1"], [0.5], [0])


def test_run_grid_resumes_after_interrupt(tmp_path: Path) -> None:
    cells = make_grid(["a", "b", "c"], [0.5], [0, 1])
    calls: list[str] = []
    interrupt = [True]

    def flaky(cell: GridCell) -> dict:
        calls.append(cell.key)
        if len(calls) == 3 and interrupt[0]:
            raise KeyboardInterrupt
        return {"metrics": {"balanced_accuracy": 0.5 + cell.seed / 10}}

    results = tmp_path / "results.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, flaky, results, progress=False)
    assert [r["key"] for r in read_jsonl(results)] == ["a@0.5#0", "b@0.5#0"]

    calls.clear()
    interrupt[0] = False
    records = run_grid(cells, flaky, results, progress=False)
    assert "a@0.5#0" not in calls and "b@0.5#0" not in calls  # finished runs are not redone
    assert calls[0] == "c@0.5#0"
    assert [r["key"] for r in records] == [c.key for c in cells]
    assert len(read_jsonl(results)) == len(cells)


def test_failures_are_recorded_and_retried_on_request(tmp_path: Path) -> None:
    cells = make_grid(["ok", "bad"], [0.5], [0])
    results = tmp_path / "results.jsonl"

    def run(cell: GridCell) -> dict:
        if cell.name == "bad":
            raise RuntimeError("engine cannot prune op foo")
        return {}

    records = run_grid(cells, run, results, progress=False)
    assert records[1]["status"] == "failed" and "engine cannot prune op foo" in records[1]["error"]
    again = run_grid(cells, lambda c: {"status": "ok"}, results, progress=False)
    assert again[1]["status"] == "failed"  # not retried by default
    retried = run_grid(cells, lambda c: {}, results, retry_failed=True, progress=False)
    assert retried[1]["status"] == "ok"


def test_append_repairs_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"kind": "run", "key": "a@0.5#0"}\n{"kind": "run", "ke')
    append_record(path, {"kind": "run", "key": "b@0.5#0"})
    assert [r["key"] for r in read_jsonl(path)] == ["a@0.5#0", "b@0.5#0"]


def test_summary_mean_and_std_over_seeds() -> None:
    records = [
        {"kind": "run", "name": "l1", "target": 0.5, "seed": s, "metrics": {"balanced_accuracy": v}}
        for s, v in ((0, 0.7), (1, 0.8), (2, 0.9))
    ]
    (row,) = summarize(records)["rows"]
    assert row["seeds"] == [0, 1, 2]
    assert row["mean"]["balanced_accuracy"] == pytest.approx(0.8)
    assert row["std"]["balanced_accuracy"] == pytest.approx(0.0816, abs=1e-3)


TINY = {
    "data": {
        "kind": "synthetic_classification",
        "n_train": 32,
        "n_val": 16,
        "n_test": 16,
        "image_size": 16,
    },
    "model.name": "tiny_cnn",
    "train.epochs": 1,
    "train.batch_size": 16,
    "prune.finetune": {"epochs": 0},
    "prune.calibration_size": 8,
    "measure.repeats": 1,
    "measure.warmup": 0,
    "measure.onnx": False,
    "progress": False,
}


@pytest.fixture
def fake_methods(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Two cheap registered methods; ``state["interrupt_at"]`` makes the n-th call raise Ctrl-C."""
    state = {"calls": [], "interrupt_at": None}

    def fake(model, example_inputs, *, context, target, **options) -> PruneResult:  # noqa: ANN001
        state["calls"].append((target.value, context.seed))
        if len(state["calls"]) == state["interrupt_at"]:
            raise KeyboardInterrupt
        return PruneResult(model=copy.deepcopy(model), plan=None, summary={"macs_removed": 0.0})

    for name in ("fake_keep_a", "fake_keep_b"):
        register_method(name, override=True)(fake)
        monkeypatch.setitem(METHODS._entries, name, fake)
    yield state
    for name in ("fake_keep_a", "fake_keep_b"):
        METHODS._entries.pop(name, None)


def test_compare_resumes_after_ctrl_c(tmp_path: Path, fake_methods: dict) -> None:
    overrides = {
        **TINY,
        "compare.methods": ["fake_keep_a", "fake_keep_b"],
        "compare.targets": [0.3, 0.5],
    }
    config = load_config(None, overrides)
    fake_methods["interrupt_at"] = 3
    with pytest.raises(KeyboardInterrupt):
        run_compare(config, out=tmp_path)
    first = read_jsonl(tmp_path / "results.jsonl")
    assert [r["kind"] for r in first] == ["base", "run", "run"]
    assert (tmp_path / "base" / "model.pt").is_file()

    fake_methods["calls"].clear()
    fake_methods["interrupt_at"] = None
    result = run_compare(config, out=tmp_path)
    assert len(fake_methods["calls"]) == 2  # only the two unfinished cells ran
    lines = read_jsonl(tmp_path / "results.jsonl")
    assert sum(r["kind"] == "base" for r in lines) == 1  # the base model was not redone
    keys = [r["key"] for r in lines if r["kind"] == "run"]
    assert sorted(keys) == sorted(
        c.key for c in make_grid(["fake_keep_a", "fake_keep_b"], [0.3, 0.5], [0])
    )
    assert len(result.records) == 5
    # the latency pass timed every cell, those of the first session loaded from models/
    assert sorted(result.latency[0]["models"]) == sorted(["base", *keys])
    assert (tmp_path / "report.html").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["rows"]) == 5


def test_compare_refuses_a_folder_of_another_setup(tmp_path: Path, fake_methods: dict) -> None:
    config = load_config(None, {**TINY, "compare.methods": ["fake_keep_a"]})
    run_compare(config, out=tmp_path)
    other = load_config(None, {**TINY, "compare.methods": ["fake_keep_a"], "train.epochs": 2})
    with pytest.raises(ConfigError, match="different 'train' section"):
        run_compare(other, out=tmp_path)
    with pytest.raises(ConfigError, match="Unknown method or criterion 'fake_kep_a'"):
        run_compare(
            load_config(None, {**TINY, "compare.methods": ["fake_kep_a"]}), out=tmp_path / "x"
        )


def test_compare_continues_a_method_killed_mid_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside sfp's second epoch: the rerun trains only the missing epoch, gives the
    uninterrupted record, and deletes the run's train_state folder once the record is written."""
    import medprune.tasks
    from medprune.methods._phases import PhaseStamp
    from medprune.tasks import TrainCallback, train

    class Watch(TrainCallback):
        def __init__(self, kill_at: int | None) -> None:
            self.kill_at, self.steps, self.epochs = kill_at, 0, 0

        def after_step(self, state: object) -> None:
            self.steps += 1
            if self.steps == self.kill_at:
                raise KeyboardInterrupt

        def on_epoch_end(self, state: object) -> None:
            self.epochs += 1

    watch = Watch(None)

    def watched_train(*args, callbacks=(), **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(isinstance(cb, PhaseStamp) for cb in callbacks):  # method phases only
            callbacks = [*callbacks, watch]
        return train(*args, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(medprune.tasks, "train", watched_train)
    overrides = {**TINY, "compare.methods": ["sfp"], "compare.targets": [0.5],
                 "prune.finetune": {"epochs": 2}, "prune.target": "ratio"}  # fmt: skip
    config = load_config(None, overrides)
    full = run_compare(config, out=tmp_path / "full")
    assert watch.epochs == 2 and not (tmp_path / "full" / "runs").exists()

    out = tmp_path / "killed"
    watch.kill_at, watch.steps, watch.epochs = 3, 0, 0  # 2 steps per epoch: inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        run_compare(config, out=out)
    assert (out / "runs" / "sfp-0.5-seed0" / "train_state" / "sfp.pt").is_file()
    assert not (out / "runs" / "finetune_only-0-seed0").exists()  # recorded: its state deleted
    watch.kill_at, watch.steps, watch.epochs = None, 0, 0
    resumed = run_compare(config, out=out)
    assert watch.epochs == 1  # only the epoch the kill lost
    assert not (out / "runs").exists()
    want, got = full.records[-1], resumed.records[-1]
    assert got["key"] == "sfp@0.5#0" and got["status"] == "ok"
    assert got["metrics"] == want["metrics"] and got["channels"] == want["channels"]


@pytest.mark.slow
def test_compare_survives_a_killed_process(tmp_path: Path) -> None:
    """SIGKILL the real CLI after its first finished cell, rerun, and nothing is redone."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "cmp"
    cmd = [
        sys.executable, "-m", "medprune.cli.__main__", "compare", "--out", str(out),
        "--methods", "l1,random,l2", "--targets", "0.3,0.5", "--model", "tiny_cnn", "--epochs", "1",
        "--finetune-epochs", "0", "--no-progress", "--set", "data.n_train=32", "--set", "data.n_val=16",
        "--set", "data.n_test=16", "--set", "data.image_size=16", "--set", "measure.onnx=false",
        "--set", "measure.repeats=1", "--set", "prune.calibration_size=8",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and sum(r["kind"] == "run" for r in read_jsonl(results)) < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [r for r in read_jsonl(results) if r["kind"] == "run"]
    assert 1 <= len(before) < 6
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    after = [r for r in read_jsonl(results) if r["kind"] == "run"]
    assert len(after) == 6  # every cell exactly once
    assert after[: len(before)] == before  # finished cells kept as they were, not redone


def test_compare_times_every_model_interleaved_at_the_end(
    tmp_path: Path, fake_methods: dict
) -> None:
    """The base and the cells are timed together in one interleaved pass (plus an A/A copy);
    the report takes their latencies from it and states its noise."""
    overrides = {**TINY, "compare.methods": ["fake_keep_a"], "compare.targets": [0.5],
                 "measure.repeats": 9, "measure.warmup": 1}  # fmt: skip
    result = run_compare(load_config(None, overrides), out=tmp_path)
    lines = read_jsonl(tmp_path / "results.jsonl")
    assert [r["kind"] for r in lines] == ["base", "run", "latency"]
    assert lines[0]["measurement"]["latency_ms"] is None  # not timed on its own any more
    latency = lines[-1]
    assert latency == result.latency[0] and latency["measure"] == "latency_ms"
    assert sorted(latency["models"]) == ["base", "fake_keep_a@0.5#0"]
    assert latency["aa_control"]["repeats"] == 9 and latency["noise"]["models"] == 3
    medians = {k: v["median_ms"] for k, v in latency["models"].items()}
    assert result.records[0]["measurement"]["latency_ms"] == medians["base"]
    assert result.records[1]["measurement"]["latency_ms"] == medians["fake_keep_a@0.5#0"]
    # the fake method keeps the architecture: the same latency within the stated noise
    diff = abs(medians["base"] - medians["fake_keep_a@0.5#0"]) / medians["base"]
    assert 100 * diff <= latency["noise"]["noise_pct"]
    report = (tmp_path / "report.md").read_text()
    assert "## Latency noise" in report and "median of 9 interleaved runs of 3 models" in report
    assert "are noise" in report and "(±" in report  # the latency cells show their spread
    assert (tmp_path / "models" / "fake_keep_a-0.5-seed0" / "model.pt").is_file()
