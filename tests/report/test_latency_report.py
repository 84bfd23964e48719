"""The report's latency: interleaved medians from a ``kind: "latency"`` record, their spread in
the cells and the noise line."""

from __future__ import annotations

from pathlib import Path

from medprune.report import (
    aggregate,
    apply_latency,
    latency_note,
    record_id,
    summary_markdown,
    write_report,
)


def _run(name: str, seed: int, latency_ms: float | None) -> dict:
    return {
        "kind": "run",
        "key": f"{name}@0.5#{seed}",
        "name": name,
        "target": 0.5,
        "seed": seed,
        "status": "ok",
        "task": "classification",
        "metrics": {"balanced_accuracy": 0.8},
        "measurement": {"macs": 5e6, "params": 1e4, "latency_ms": latency_ms},
    }


def _latency_record(medians: dict[str, float]) -> dict:
    models = {
        k: {"median_ms": m, "spread_pct": 2.5, "p10_ms": m * 0.975, "p90_ms": m * 1.025}
        for k, m in medians.items()
    }
    note = (
        "median of 20 interleaved runs of 4 models, 2 threads; run-to-run spread ±2.5%; "
        "differences below 3.0% are noise (A/A check: one model measured twice, 0.4% apart)"
    )
    return {"kind": "latency", "measure": "latency_ms", "backend": "torch", "models": models,
            "noise": {"noise_pct": 3.0}, "note": note}  # fmt: skip


def _records() -> list[dict]:
    base = {**_run("unpruned", 0, None), "kind": "base", "measurement": {"macs": 1e7}}
    del base["key"]
    return [base, _run("l1", 0, 99.0), _run("l1", 1, 99.0)]


def test_interleaved_medians_replace_each_models_own() -> None:
    records = _records()
    assert [record_id(r) for r in records] == ["base", "l1@0.5#0", "l1@0.5#1"]
    latency = _latency_record({"base": 10.0, "l1@0.5#0": 6.0, "l1@0.5#1": 7.0})
    old = _latency_record({"base": 50.0})  # an earlier pass: the last record wins
    applied = apply_latency([*records, old, latency])
    assert [r["measurement"].get("latency_ms") for r in applied[:3]] == [10.0, 6.0, 7.0]
    assert applied[1]["measurement"]["latency_spread_pct"] == 2.5
    assert records[1]["measurement"]["latency_ms"] == 99.0  # the input is not changed
    base, rows = aggregate([*records, latency])
    assert base is not None and base.mean("latency_ms") == 10.0
    assert len(rows) == 1 and rows[0].mean("latency_ms") == 6.5  # no row for the latency record
    assert rows[0].mean("latency_spread_pct") == 2.5


def test_report_shows_spread_and_the_noise_line(tmp_path: Path) -> None:
    records = [*_records(), _latency_record({"base": 10.0, "l1@0.5#0": 6.0, "l1@0.5#1": 7.0})]
    paths = write_report(tmp_path, records, plots=False)
    md = paths.markdown.read_text()
    assert "## Latency noise" in md
    assert (
        "Latency, PyTorch CPU: median of 20 interleaved runs of 4 models, 2 threads; "
        "run-to-run spread ±2.5%; differences below 3.0% are noise" in md
    )
    assert "| 10.00 (±2.5%) |" in md and "| 6.50 ± 0.50 (±2.5%) |" in md
    assert "differences below 3.0% are noise" in paths.html.read_text()
    assert "interleaved runs" in summary_markdown(records)


def test_without_a_latency_record_the_note_says_so() -> None:
    records = _records()
    timing = {"median_ms": 10.0, "p10_ms": 9.0, "p90_ms": 11.0, "repeats": 20, "threads": 1}
    for r in records:
        r["measurement"]["latency"] = timing
    note = latency_note(records)
    assert note == (
        "Latency, PyTorch CPU: median of 20 runs per model, 1 thread, each model timed on its "
        "own, not interleaved; run-to-run spread ±10.0%."
    )
    assert latency_note([{"kind": "base", "measurement": {}}]) is None
    assert apply_latency(records) == records


def test_a_failed_latency_pass_is_stated_and_changes_nothing() -> None:
    records = _records()
    failed = {"kind": "latency", "measure": "onnx_latency_ms", "error": "TraceError: op foo"}
    assert apply_latency([*records, failed])[1] == records[1]
    note = latency_note([*records, failed])
    assert note == "Latency, ONNX Runtime CPU: not measured (TraceError: op foo)."
