"""Result records: the JSON source of truth of every report, and how they are summarised.

A *record* is one JSON object per model evaluated: the unpruned base (``"kind": "base"``) or one
pruning run (``"kind": "run"``). Keys (all optional except ``kind`` and ``name``)::

    {"kind": "run", "name": "beta_rank", "method": "oneshot", "criterion": "beta_rank",
     "target_kind": "macs", "target": 0.5, "seed": 0, "status": "ok" | "failed", "error": "...",
     "masked": true (unstructured weights zeroed: measured MACs / params are dense),
     "task": "classification" | "segmentation", "class_names": ["normal", "pneumonia"],
     "metrics": {... medprune.tasks.evaluate() ...}, "measurement": {... Measurement.to_dict() ...},
     "summary": {"macs_removed": 0.49, "params_removed": 0.61, ...},
     "channels": {"layer name": channels kept}, "time_s": 12.3}

A ``"kind": "latency"`` record (:mod:`medprune.pipeline.latency`) holds the latency of several
models measured interleaved in one pass, keyed by :func:`record_id`; :func:`apply_latency` puts
it into those models' measurements and :func:`latency_note` states its noise.

:func:`aggregate` folds the records of several seeds into one :class:`Row` per (name, target).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medprune.typing import PathLike

CLASSIFICATION_METRICS = (
    ("balanced_accuracy", "Bal. acc"),
    ("macro_f1", "Macro-F1"),
    ("auc_roc", "AUC"),
)
SEGMENTATION_METRICS = (("dice", "Dice"), ("iou", "IoU"))


def task_of(records: Iterable[Mapping[str, Any]]) -> str:
    """``"classification"`` or ``"segmentation"`` (from the first record that says)."""
    for r in records:
        if r.get("task"):
            return str(r["task"])
        metrics = r.get("metrics") or {}
        if "dice" in metrics:
            return "segmentation"
    return "classification"


def metric_columns(task: str) -> tuple[tuple[str, str], ...]:
    """(metric key, column title) pairs reported for ``task``."""
    return SEGMENTATION_METRICS if task == "segmentation" else CLASSIFICATION_METRICS


def scalar(value: Any) -> float | None:
    """A float from a metric entry: a number, or a mapping with ``"mean"``; None otherwise."""
    if isinstance(value, Mapping):
        value = value.get("mean")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _label(key: Any, names: Sequence[Any]) -> str:
    """Name of class ``key``: ``names[key]``, or ``"class k"`` when unnamed (no names, or the
    default names ``"0"``, ``"1"``, ... datasets give when they know none)."""
    label = str(key)
    if not label.isdigit():
        return label
    index = int(label)
    name = str(names[index]) if index < len(names) else label
    return f"class {index}" if name == label else name


def per_class(record: Mapping[str, Any], stat: str = "recall") -> dict[str, float]:
    """Per-class figure of one record: classification recall, segmentation Dice.

    Reads classification ``metrics["per_class"]`` (a list of ``{"class", stat, ...}`` dicts or a
    mapping ``{class: {stat: v}}``) or segmentation ``metrics["dice_per_class"]`` (numbers, None
    for a class never present; indexed by ``metrics["foreground_classes"]`` when given), which
    wins over the pixel-level ``per_class`` segmentation metrics also carry. Keys
    are the class names when the record has ``class_names``.
    """
    metrics = record.get("metrics") or {}
    names = list(record.get("class_names") or [])
    table = metrics.get("per_class")
    if metrics.get("dice_per_class") is not None:  # segmentation: Dice, not the pixel per_class
        table = list(metrics["dice_per_class"])
        classes = metrics.get("foreground_classes")
        if classes is not None and len(classes) == len(table):  # foreground classes only
            table = dict(zip((str(c) for c in classes), table, strict=True))
    if table is None:
        return {}
    items = table.items() if isinstance(table, Mapping) else enumerate(table)
    out: dict[str, float] = {}
    for key, entry in items:
        if isinstance(entry, Mapping):
            key = entry.get("class", key)
            v = scalar(entry.get(stat))
        else:
            v = scalar(entry)
        if v is not None:
            out[_label(key, names)] = v
    return out


def minority_class(base: Mapping[str, Any] | None) -> str | None:
    """The rare class of the base record: ``metrics["minority_class"]``, else the class with the
    smallest support, else (segmentation) the last foreground class."""
    if not base:
        return None
    metrics = base.get("metrics") or {}
    names = list(base.get("class_names") or [])
    figures = per_class(base)
    if not figures:
        return None
    if metrics.get("minority_class") is not None:
        label = _label(metrics["minority_class"], names)
        if label in figures:  # a segmentation minority of 0 (background) has no Dice column
            return label
    table = metrics.get("per_class")
    support: dict[str, float] = {}
    items = table.items() if isinstance(table, Mapping) else enumerate(table or [])
    for key, entry in items:
        if isinstance(entry, Mapping) and scalar(entry.get("support")) is not None:
            label = _label(entry.get("class", key), names)
            if label in figures:
                support[label] = float(entry["support"])
    if support:
        return min(support, key=lambda k: support[k])
    return list(figures)[-1]


def class_support(record: Mapping[str, Any] | None, cls: str) -> int | None:
    """Test-set size behind class ``cls``'s figure in ``record``: images of that class
    (classification ``per_class[k]["support"]``) or images where it occurs (segmentation
    ``n_images_per_class``); None if the record does not say."""
    metrics = (record or {}).get("metrics") or {}
    names = list((record or {}).get("class_names") or [])
    if metrics.get("dice_per_class") is not None:
        counts = metrics.get("n_images_per_class") or []
        classes = metrics.get("foreground_classes") or list(range(1, len(counts) + 1))
        found = [n for c, n in zip(classes, counts, strict=False) if _label(c, names) == cls]
        return int(found[0]) if found else None
    table = metrics.get("per_class")
    items = table.items() if isinstance(table, Mapping) else enumerate(table or [])
    for key, entry in items:
        if isinstance(entry, Mapping) and _label(entry.get("class", key), names) == cls:
            v = scalar(entry.get("support"))
            return int(v) if v is not None else None
    return None


def class_spread(record: Mapping[str, Any] | None, cls: str) -> float | None:
    """Per-image standard deviation of segmentation class ``cls``'s Dice (None otherwise)."""
    metrics = (record or {}).get("metrics") or {}
    names = list((record or {}).get("class_names") or [])
    spread = metrics.get("dice_std_per_class")
    if spread is None:
        return None
    classes = metrics.get("foreground_classes") or list(range(1, len(spread) + 1))
    for c, v in zip(classes, spread, strict=False):
        if _label(c, names) == cls:
            return scalar(v)
    return None


CONTROL_NAME = "finetune_only"
CRITERION_METHODS = ("oneshot", "iterative")


def method_label(record: Mapping[str, Any]) -> str:
    """The Method column of one record, as a user names the method.

    ``"base (unpruned)"`` for the unpruned model, ``"finetune_only (control)"``, ``"oneshot (l1)"``
    / ``"iterative (taylor)"`` for criterion-driven methods, the method itself otherwise
    (``"sfp"``, ``"sauron"``, ``"lottery"``). Records without a ``method`` (hand-made, old) keep
    their ``name``.
    """
    name = str(record.get("name") or "?")
    if record.get("kind") == "base":
        return "base (unpruned)" if name == "unpruned" else name
    if name == CONTROL_NAME:
        return f"{CONTROL_NAME} (control)"
    method, criterion = record.get("method"), record.get("criterion")
    if not method:
        return name
    if method in CRITERION_METHODS and criterion:
        return f"{method} ({criterion})"
    return str(method)


def is_masked(record: Mapping[str, Any]) -> bool:
    """True for unstructured (mask) runs: their measured MACs and params are the dense ones."""
    return bool(record.get("masked")) or record.get("method") == "lottery"


@dataclass
class Row:
    """One line of the comparison table: a (name, target) cell averaged over seeds.

    ``name`` is the grid name (``"beta_rank"``), ``label`` the Method column
    (:func:`method_label`: ``"oneshot (beta_rank)"``); ``target_kind`` what ``target`` is a
    fraction of; ``masked`` marks unstructured runs (dense MACs / params); ``per_class`` holds one
    figure per seed, ``class_sd`` (segmentation) the per-image Dice spread of each seed.
    """

    name: str
    target: float
    kind: str = "run"
    label: str = ""
    target_kind: str = "macs"
    masked: bool = False
    seeds: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    per_class: dict[str, list[float]] = field(default_factory=dict)
    class_sd: dict[str, list[float]] = field(default_factory=dict)  # per-image Dice spread
    channels: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    def mean(self, key: str) -> float | None:
        v = self.values.get(key) or []
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values.get(key) or []
        return statistics.pstdev(v) if len(v) > 1 else None

    def class_mean(self, cls: str) -> float | None:
        v = self.per_class.get(cls) or []
        return statistics.fmean(v) if v else None

    def class_std(self, cls: str) -> float | None:
        """Population std over seeds of class ``cls``'s figure (None with fewer than 2)."""
        v = self.per_class.get(cls) or []
        return statistics.pstdev(v) if len(v) > 1 else None


MEASURE_KEYS = (
    "macs",
    "params",
    "latency_ms",
    "onnx_latency_ms",
    "gpu_latency_ms",
    "latency_spread_pct",
    "onnx_latency_spread_pct",
    "gpu_latency_spread_pct",
    "peak_memory_bytes",
    "size_bytes",
)

#: Latency measurement key -> what the report calls it.
LATENCY_LABELS = {
    "latency_ms": "PyTorch CPU",
    "onnx_latency_ms": "ONNX Runtime CPU",
    "gpu_latency_ms": "PyTorch GPU",
}


def spread_key(latency_key: str) -> str:
    """``"onnx_latency_ms"`` -> ``"onnx_latency_spread_pct"`` (run-to-run spread, % of median)."""
    return latency_key.removesuffix("_ms") + "_spread_pct"


def record_id(record: Mapping[str, Any]) -> str:
    """The name a latency record uses for ``record``: ``"base"`` for the base model, else its
    ``key`` (``"l1@0.5#0"``, as ``medprune compare`` writes), else one made the same way."""
    if record.get("kind") == "base":
        return "base"
    if record.get("key"):
        return str(record["key"])
    return (
        f"{record.get('name', '?')}@{float(record.get('target') or 0.0):g}#{record.get('seed', 0)}"
    )


def latency_runs(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The last ``kind: "latency"`` record of each measurement key (``"latency_ms"``, ...)."""
    out: dict[str, Mapping[str, Any]] = {}
    for r in records:
        if r.get("kind") == "latency" and r.get("measure") in LATENCY_LABELS:
            out[str(r["measure"])] = r
    return out


def apply_latency(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``records`` with the interleaved latencies of their latency records in place of each
    model's own: ``measurement[key]`` becomes the median and ``measurement[spread_key(key)]``
    the run-to-run spread. Records no latency record names are returned unchanged."""
    runs = latency_runs(records)
    if not runs:
        return list(records)
    out: list[Mapping[str, Any]] = []
    for r in records:
        if r.get("kind") == "latency":
            out.append(r)
            continue
        measurement = dict(r.get("measurement") or {})
        rid = record_id(r)
        for key, run in runs.items():
            result = (run.get("models") or {}).get(rid)
            if isinstance(result, Mapping) and scalar(result.get("median_ms")) is not None:
                measurement[key] = float(result["median_ms"])
                measurement[spread_key(key)] = scalar(result.get("spread_pct"))
        out.append({**r, "measurement": measurement})
    return out


def latency_note(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The report's latency line: how each latency column was measured and its noise.

    From the latency records when there are some (``"Latency, PyTorch CPU: median of 20
    interleaved runs of 5 models, 2 threads; run-to-run spread ±3.1%; differences below 2.4%
    are noise."``), else from the models' own measurements (measured one after the other, so
    a difference says less); None when nothing was timed.
    """
    runs = latency_runs(records)
    if runs:
        parts = [
            f"Latency, {LATENCY_LABELS[k]}: {run['note']}."
            if run.get("note")
            else f"Latency, {LATENCY_LABELS[k]}: not measured ({run.get('error', 'no result')})."
            for k, run in runs.items()
        ]
        return " ".join(parts)
    spreads, repeats, threads = [], set(), set()
    for r in records:
        t = (r.get("measurement") or {}).get("latency")
        if r.get("kind") == "latency" or not isinstance(t, Mapping):
            continue
        p10, p90, median = (scalar(t.get(k)) for k in ("p10_ms", "p90_ms", "median_ms"))
        if p10 is not None and p90 is not None and median:
            spreads.append(50.0 * (p90 - p10) / median)
            repeats.add(t.get("repeats"))
            threads.add(t.get("threads"))
    if not spreads:
        return None
    runs_text = f"{repeats.pop()} runs" if len(repeats) == 1 else "several runs"
    n_threads = threads.pop() if len(threads) == 1 else None
    thread_text = "" if n_threads is None else f", {n_threads} thread{'s' * (n_threads != 1)}"
    return (
        f"Latency, PyTorch CPU: median of {runs_text} per model{thread_text}, each model timed "
        f"on its own, not interleaved; run-to-run spread ±{statistics.median(spreads):.1f}%."
    )


def record_values(record: Mapping[str, Any], base: Mapping[str, Any] | None) -> dict[str, float]:
    """The numeric figures of one record (measurements, metrics, fractions removed)."""
    out: dict[str, float] = {}
    measurement = record.get("measurement") or {}
    summary = record.get("summary") or {}
    for key in MEASURE_KEYS:
        v = scalar(measurement.get(key))
        if v is not None:
            out[key] = v
    # no measurement (older or hand-made records): the method's own count of the final model;
    # a masked run's params_after counts nonzero weights, so its dense count is params_before
    after = {
        "macs": "macs_after",
        "params": "params_before" if is_masked(record) else "params_after",
    }
    for key, source in after.items():
        v = scalar(summary.get(source))
        if key not in out and v is not None:
            out[key] = v
    metrics = record.get("metrics") or {}
    for key, _ in CLASSIFICATION_METRICS + SEGMENTATION_METRICS:
        v = scalar(metrics.get(key))
        if v is not None:
            out[key] = v
    base_m = (base or {}).get("measurement") or {}
    for key in ("macs", "params"):
        removed = scalar(summary.get(f"{key}_removed"))
        if removed is None and key in out and scalar(base_m.get(key)):
            removed = 1.0 - out[key] / float(base_m[key])
        if removed is None and record.get("kind") == "base":
            removed = 0.0
        if removed is not None:
            out[f"{key}_removed"] = removed
    if scalar(record.get("time_s")) is not None:
        out["time_s"] = float(record["time_s"])
    return out


def aggregate(records: Sequence[Mapping[str, Any]]) -> tuple[Row | None, list[Row]]:
    """Fold records into the base row and one row per (name, target), in first-seen order."""
    records = apply_latency(records)
    base_rec = next((r for r in records if r.get("kind") == "base"), None)
    base_row = None
    rows: dict[tuple[str, float], Row] = {}
    for r in records:
        if r.get("kind") == "latency":
            continue  # folded into the models' records by apply_latency
        if r.get("kind") == "base":
            if r is not base_rec:
                continue
            name = str(r.get("name") or "unpruned")
            row = base_row = Row(name=name, target=0.0, kind="base", label=method_label(r))
        else:
            key = (str(r.get("name", "?")), float(r.get("target") or 0.0))
            row = rows.setdefault(key, Row(name=key[0], target=key[1]))
            if r.get("status", "ok") == "ok" or row.label == row.name:
                row.label = method_label(r)  # a failed record may lack the method
            row.target_kind = str(r.get("target_kind") or row.target_kind)
            row.masked = row.masked or is_masked(r)
        if r.get("status", "ok") != "ok":
            row.failed.append(str(r.get("error") or "failed"))
            continue
        row.seeds.append(int(r.get("seed") or 0))
        if r.get("note") and r["note"] not in row.notes:
            row.notes.append(str(r["note"]))
        for k, v in record_values(r, base_rec).items():
            row.values.setdefault(k, []).append(v)
        for cls, v in per_class(r).items():
            row.per_class.setdefault(cls, []).append(v)
            sd = class_spread(r, cls)
            if sd is not None:
                row.class_sd.setdefault(cls, []).append(sd)
        if not row.channels and r.get("channels"):
            row.channels = {str(k): int(v) for k, v in dict(r["channels"]).items()}
    out = list(rows.values())
    _disambiguate(out)
    return base_row, out


def _disambiguate(rows: Sequence[Row]) -> None:
    """Two grid names with one label (``oneshot`` and ``l1`` under ``prune.criterion: l1``)
    get their grid name appended, so every table row stays identifiable."""
    names: dict[str, set[str]] = {}
    for row in rows:
        names.setdefault(row.label, set()).add(row.name)
    for row in rows:
        if len(names[row.label]) > 1 and row.label != row.name:
            row.label = f"{row.label} [{row.name}]"


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (killed writer) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
