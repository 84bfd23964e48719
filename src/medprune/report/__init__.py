"""Reports: JSON records (the source of truth) -> ``report.md`` + self-contained ``report.html``.

    from medprune.report import write_report, read_jsonl
    write_report("runs/cmp", read_jsonl("runs/cmp/results.jsonl"), command="medprune compare ...")

See :mod:`medprune.report.records` for the record layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medprune.report.findings import rare_class_summary
from medprune.report.records import (
    Row,
    aggregate,
    apply_latency,
    latency_note,
    method_label,
    metric_columns,
    minority_class,
    per_class,
    read_jsonl,
    record_id,
    record_values,
    scalar,
    task_of,
)
from medprune.report.render import (
    Table,
    md_table,
    per_class_table,
    render_html,
    render_markdown,
    results_table,
)
from medprune.typing import PathLike


@dataclass(frozen=True)
class ReportPaths:
    """Where a report was written."""

    markdown: Path
    html: Path
    plots: tuple[Path, ...]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _plots(base: Row | None, rows: Sequence[Row], task: str) -> dict[str, tuple[str, bytes]]:
    from medprune.report import plots

    metric, title = metric_columns(task)[0]
    stat = "Dice" if task == "segmentation" else "recall"
    out: dict[str, tuple[str, bytes]] = {}
    if any(r.values for r in rows):
        out[f"{title} vs MACs removed"] = (
            "metric_vs_macs.png",
            plots.metric_vs_macs(base, rows, metric, title),
        )
        out["Latency vs MACs removed"] = ("latency_vs_macs.png", plots.latency_vs_macs(base, rows))
    if any(r.channels for r in rows):
        out["Channels kept per layer"] = ("channels_kept.png", plots.channels_kept(base, rows))
    if base is not None and base.per_class and any(r.per_class for r in rows):
        out[f"Per-class {stat} change"] = (
            "per_class_change.png",
            plots.per_class_change(base, rows, stat),
        )
    return out


def summary_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The rare-class summary, results and per-class tables of ``records`` as Markdown (for the
    terminal)."""
    task = task_of(records)
    base, rows = aggregate(records)
    base_rec = next((r for r in records if r.get("kind") == "base"), None)
    minority = minority_class(base_rec)
    summary = rare_class_summary(base_rec, base, rows, task, minority)
    parts = [summary] if summary else []
    parts.append(md_table(results_table(base, rows, task, minority)))
    note = latency_note(records)
    if note:
        parts.append(note)
    pc = per_class_table(base, rows, task)
    if pc is not None:
        parts.append(md_table(pc))
    return "\n\n".join(parts) + "\n"


def write_report(
    out_dir: PathLike,
    records: Sequence[Mapping[str, Any]],
    *,
    title: str = "medprune report",
    command: str | None = None,
    config_yaml: str | None = None,
    notes: Sequence[tuple[str, str]] = (),
    plots: bool = True,
) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``out_dir``.

    Args:
        out_dir: output folder (created).
        records: base and run records (see :mod:`medprune.report.records`).
        title: page title.
        command: the command line that reproduces the report.
        config_yaml: the resolved config text.
        notes: extra (heading, paragraph) sections placed before the tables (after the
            "Summary" paragraph: per budget, the method that kept the rare class best).
        plots: draw the plots (matplotlib).

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = task_of(records)
    base, rows = aggregate(records)
    base_rec = next((r for r in records if r.get("kind") == "base"), None)
    minority = minority_class(base_rec)
    summary = rare_class_summary(base_rec, base, rows, task, minority)
    sections: list[tuple[str, Table | str]] = [("Summary", summary)] if summary else []
    sections += list(notes)
    sections.append(("Results", results_table(base, rows, task, minority)))
    note = latency_note(records)
    if note:
        sections.append(("Latency noise", note))
    pc = per_class_table(base, rows, task)
    if pc is not None:
        stat = "Dice" if task == "segmentation" else "recall"
        sections.append((f"Per-class {stat} (change from the unpruned model, points)", pc))
    images = _plots(base, rows, task) if plots else {}
    plot_dir = out / "plots"
    written = []
    if images:
        plot_dir.mkdir(exist_ok=True)
        for _, (name, png) in images.items():
            (plot_dir / name).write_bytes(png)
            written.append(plot_dir / name)
    md = render_markdown(
        title,
        sections,
        {caption: f"plots/{name}" for caption, (name, _) in images.items()},
        command=command,
        config_yaml=config_yaml,
    )
    page = render_html(
        title,
        sections,
        {caption: png for caption, (_, png) in images.items()},
        command=command,
        config_yaml=config_yaml,
    )
    _write_text(out / "report.md", md)
    _write_text(out / "report.html", page)
    return ReportPaths(out / "report.md", out / "report.html", tuple(written))


__all__ = [
    "ReportPaths",
    "Row",
    "Table",
    "aggregate",
    "apply_latency",
    "latency_note",
    "method_label",
    "metric_columns",
    "minority_class",
    "per_class",
    "rare_class_summary",
    "read_jsonl",
    "record_id",
    "record_values",
    "scalar",
    "summary_markdown",
    "task_of",
    "write_report",
]
