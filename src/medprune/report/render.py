"""Tables of a report and their Markdown / self-contained HTML rendering."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from medprune.report.records import Row, metric_columns, spread_key


@dataclass
class Table:
    """Headers and string cells of one table."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


def _fmt(v: float | None, std: float | None = None, *, digits: int = 3, pct: bool = False) -> str:
    if v is None:
        return "—"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    text = f"{v * scale:.{1 if pct else digits}f}{unit}"
    if std is not None and std > 0:
        text += f" ± {std * scale:.{1 if pct else digits}f}"
    return text


def _human(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f}{suffix}{unit}"
    return f"{v:.0f}{unit}"


def _latency(row: Row, key: str) -> str:
    """Median latency (mean over seeds ± std) and its run-to-run spread: ``"12.34 (±2.1%)"``."""
    text = _fmt(row.mean(key), row.std(key), digits=2)
    spread = row.mean(spread_key(key))
    return text if spread is None or row.mean(key) is None else f"{text} (±{spread:.1f}%)"


def target_text(row: Row) -> str:
    """The Target cell: ``"50%"`` (of MACs, the default), ``"30% latency"``; ``"—"`` for the base."""
    if row.kind == "base":
        return "—"
    return f"{row.target:.0%}" + (" latency" if row.target_kind == "latency" else "")


def results_table(base: Row | None, rows: Sequence[Row], task: str, minority: str | None) -> Table:
    """The methods x targets table (base model first)."""
    metrics = metric_columns(task)
    all_rows = ([base] if base is not None else []) + list(rows)
    has = {
        k: any(r.mean(k) is not None for r in all_rows)
        for k in ("onnx_latency_ms", "gpu_latency_ms")
    }
    headers = ["Method", "Target", "MACs removed", "Params removed", "MACs", "Params"]
    headers += ["Latency PyTorch CPU (ms)"]
    headers += ["Latency ONNX Runtime CPU (ms)"] if has["onnx_latency_ms"] else []
    headers += ["Latency GPU (ms)"] if has["gpu_latency_ms"] else []
    headers += ["Peak memory", "Size"] + [title for _, title in metrics]
    stat = "Dice" if task == "segmentation" else "recall"
    if minority is not None:
        headers.append(f"Minority {stat} ({minority})")
    headers += ["Seeds", "Status"]
    table = Table(headers)
    for row in all_rows:
        dense = " (dense)" if row.masked else ""  # masks zero weights: nothing removed from MACs
        cells = [
            row.label,
            target_text(row),
            _fmt(row.mean("macs_removed"), row.std("macs_removed"), pct=True) + dense,
            _fmt(row.mean("params_removed"), row.std("params_removed"), pct=True)
            + (" (nonzero)" if row.masked else ""),
            _human(row.mean("macs")) + dense,
            _human(row.mean("params")) + dense,
            _latency(row, "latency_ms"),
        ]
        if has["onnx_latency_ms"]:
            cells.append(_latency(row, "onnx_latency_ms"))
        if has["gpu_latency_ms"]:
            cells.append(_latency(row, "gpu_latency_ms"))
        cells += [_human(row.mean("peak_memory_bytes"), "B"), _human(row.mean("size_bytes"), "B")]
        cells += [_fmt(row.mean(k), row.std(k)) for k, _ in metrics]
        if minority is not None:
            cells.append(_fmt(row.class_mean(minority)))
        status = "ok" if not row.notes else "ok: " + "; ".join(row.notes)
        if row.failed:
            status = f"failed ({len(row.failed)}): {row.failed[0][:80]}"
        cells += [str(len(row.seeds)), status]
        table.rows.append(cells)
    return table


def per_class_table(base: Row | None, rows: Sequence[Row], task: str) -> Table | None:
    """Per-class recall (segmentation: Dice) of each row, with the change from the base."""
    if base is None or not base.per_class:
        return None
    classes = list(base.per_class)
    table = Table(["Method", "Target", *classes])
    table.rows.append([base.label, "—", *(_fmt(base.class_mean(c)) for c in classes)])
    for row in rows:
        cells = [row.label, target_text(row)]
        for c in classes:
            now, ref = row.class_mean(c), base.class_mean(c)
            delta = f" ({100 * (now - ref):+.1f})" if now is not None and ref is not None else ""
            cells.append(_fmt(now) + delta)
        table.rows.append(cells)
    return table


def md_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(
    title: str,
    sections: Sequence[tuple[str, Table | str]],
    images: Mapping[str, str],
    *,
    command: str | None,
    config_yaml: str | None,
) -> str:
    """Markdown text: a title, sections (tables or paragraphs), images (caption -> relative
    path) and the command + config that reproduce the report."""
    parts = [f"# {title}", ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", md_table(body) if isinstance(body, Table) else body, ""]
    if images:
        parts += ["## Plots", ""]
        parts += [f"![{caption}]({path})\n" for caption, path in images.items()]
    parts += _reproduce_md(command, config_yaml)
    return "\n".join(parts).rstrip() + "\n"


def _reproduce_md(command: str | None, config_yaml: str | None) -> list[str]:
    out = ["## Reproduce", ""]
    if command:
        out += ["```bash", command, "```", ""]
    if config_yaml:
        out += [
            "Resolved config (`config.resolved.yaml`):",
            "",
            "```yaml",
            config_yaml.rstrip(),
            "```",
            "",
        ]
    return out


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1300px;
color:#222;padding:0 1em}
h1{border-bottom:2px solid #2b6cb0;padding-bottom:.3em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#edf2f7}td:first-child,th:first-child{text-align:left}
tr.base{background:#fefcbf}tr.failed{color:#c53030}
figure{display:inline-block;margin:.5em;vertical-align:top}
figcaption{font-size:13px;color:#555;text-align:center}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:12px}
"""


def _html_table(table: Table, css_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for i, row in enumerate(table.rows):
        cls = "base" if row[1] == "—" else "failed" if row[-1].startswith("failed") else "run"
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        body.append(f'<tr class="{cls}" data-row="{i}">{cells}</tr>')
    return (
        f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def render_html(
    title: str,
    sections: Sequence[tuple[str, Table | str]],
    images: Mapping[str, bytes],
    *,
    command: str | None,
    config_yaml: str | None,
) -> str:
    """A self-contained HTML page: inline CSS, PNG images embedded as base64, no network."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    n_tables = 0  # tables are numbered on their own: table-0 is the first table (Results)
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, Table):
            parts.append(_html_table(body, f"table-{n_tables}"))
            n_tables += 1
        else:
            parts.append(f"<p>{html.escape(body)}</p>")
    if images:
        parts.append('<h2>Plots</h2><div id="plots">')
        for caption, png in images.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("<h2>Reproduce</h2>")
    if command:
        parts.append(f'<pre id="command">{html.escape(command)}</pre>')
    if config_yaml:
        parts.append(f'<pre id="config">{html.escape(config_yaml)}</pre>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
