"""Report plots (matplotlib, Agg backend), each returned as PNG bytes.

- metric vs MACs removed: one line per method, the unpruned model as a dashed line;
- latency vs MACs removed (PyTorch solid, ONNX Runtime dashed);
- per-layer channels kept per method (fraction of the base model's channels);
- per-class change (recall, or Dice for segmentation) per method against the unpruned model.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)

from medprune.report.records import Row  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _by_name(rows: Sequence[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        if row.values:
            out.setdefault(row.name, []).append(row)
    return {k: sorted(v, key=lambda r: r.mean("macs_removed") or r.target) for k, v in out.items()}


def metric_vs_macs(base: Row | None, rows: Sequence[Row], metric: str, title: str) -> bytes:
    """Task metric (mean ± std over seeds) against the percentage of MACs removed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for line in _by_name(rows).values():
        xs = [100 * (r.mean("macs_removed") or 0.0) for r in line]
        ys = [r.mean(metric) for r in line]
        errs = [r.std(metric) or 0.0 for r in line]
        if all(y is None for y in ys):
            continue
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=line[0].label)
    if base is not None and base.mean(metric) is not None:
        ax.axhline(base.mean(metric), color="black", linestyle="--", label=base.label)
        ax.plot([0], [base.mean(metric)], "ks")
    ax.set_xlabel("MACs removed (%)")
    ax.set_ylabel(title)
    ax.set_title(f"{title} vs MACs removed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def latency_vs_macs(base: Row | None, rows: Sequence[Row]) -> bytes:
    """Measured CPU latency (PyTorch: circles, solid; ONNX Runtime: triangles, dashed) against
    MACs removed; the unpruned model in black."""
    backends = (("latency_ms", "-", "o", "PyTorch"), ("onnx_latency_ms", "--", "^", "ONNX Runtime"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, line in enumerate(_by_name(rows).values()):
        xs = [100 * (r.mean("macs_removed") or 0.0) for r in line]
        for j, (key, style, marker, _) in enumerate(backends):
            ys = [r.mean(key) for r in line]
            if any(y is not None for y in ys):
                label = line[0].label if j == 0 else "_nolegend_"
                ax.plot(xs, ys, style, marker=marker, color=f"C{i % 10}", label=label)
    for key, style, marker, backend in backends:
        if base is not None and base.mean(key) is not None:
            ax.axhline(base.mean(key), color="gray", linestyle=style, lw=0.8)
            ax.plot(
                [0],
                [base.mean(key)],
                marker=marker,
                color="black",
                ls="",
                label=f"{base.label} ({backend})",
            )
    ax.set_xlabel("MACs removed (%)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(
        "Measured CPU latency vs MACs removed\n(circles: PyTorch, triangles: ONNX Runtime)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def channels_kept(base: Row | None, rows: Sequence[Row]) -> bytes:
    """Fraction of each layer's channels kept, one line per (method, target)."""
    layers = list(base.channels) if base is not None and base.channels else []
    if not layers:
        for row in rows:
            layers = layers or list(row.channels)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
    for row in rows:
        if not row.channels:
            continue
        ys = []
        for layer in layers:
            full = base.channels.get(layer) if base is not None else None
            kept = row.channels.get(layer)
            ys.append(kept / full if kept is not None and full else float("nan"))
        ax.plot(range(len(layers)), ys, marker=".", label=f"{row.label} @{row.target:.0%}")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=70, ha="right", fontsize=6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("channels kept (fraction)")
    ax.set_title("Per-layer channels kept")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def per_class_change(base: Row | None, rows: Sequence[Row], stat: str = "recall") -> bytes:
    """Per-class change of ``stat`` (points) against the unpruned model, grouped bars."""
    classes = list(base.per_class) if base is not None else []
    runs = [r for r in rows if r.per_class]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(runs) * max(1, len(classes))), 4))
    width = 0.8 / max(1, len(runs))
    for i, row in enumerate(runs):
        deltas = []
        for cls in classes:
            now, ref = row.class_mean(cls), base.class_mean(cls) if base is not None else None
            deltas.append(100 * (now - ref) if now is not None and ref is not None else 0.0)
        xs = [c + (i - (len(runs) - 1) / 2) * width for c in range(len(classes))]
        ax.bar(xs, deltas, width=width, label=f"{row.label} @{row.target:.0%}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes)
    ax.set_ylabel(f"{stat} change (points)")
    ax.set_title(f"Per-class {stat} change vs the unpruned model")
    ax.grid(alpha=0.3, axis="y")
    if runs:
        ax.legend(fontsize=7)
    return _png(fig)
