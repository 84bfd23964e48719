"""Report rendering from hand-made records: Markdown rows, HTML with base64 images, and the HTML
page loaded in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from medprune.report import aggregate, minority_class, per_class, read_jsonl, write_report


def _record(
    kind: str, name: str, target: float, seed: int, macs: float, bacc: float, rec0: float
) -> dict:
    return {
        "kind": kind,
        "name": name,
        "target": target,
        "seed": seed,
        "status": "ok",
        "task": "classification",
        "class_names": ["benign", "malignant"],
        "metrics": {
            "balanced_accuracy": bacc,
            "macro_f1": bacc - 0.05,
            "auc_roc": bacc + 0.02,
            "per_class": [
                {"class": 0, "recall": 0.95, "support": 170},
                {"class": 1, "recall": rec0, "support": 30},
            ],
            "minority_class": 1,
        },
        "measurement": {
            "macs": macs,
            "params": macs / 20,
            "latency_ms": macs / 1e6,
            "onnx_latency_ms": macs / 2e6,
            "peak_memory_bytes": 4e6,
            "size_bytes": 3e5,
        },
        "summary": {"macs_removed": 1 - macs / 1e7} if kind == "run" else {},
        "channels": {"conv1": 16, "layer1.conv": int(32 * macs / 1e7)},
    }


@pytest.fixture
def records() -> list[dict]:
    out = [_record("base", "unpruned", 0.0, 0, 1e7, 0.90, 0.80)]
    for name, rec in (("l1", 0.60), ("beta_rank", 0.75)):
        for seed in (0, 1):
            out.append(_record("run", name, 0.5, seed, 5e6 + seed * 1e5, 0.85 - seed * 0.02, rec))
    out.append(
        {
            "kind": "run",
            "name": "sfp",
            "target": 0.5,
            "seed": 0,
            "status": "failed",
            "error": "UnsupportedOpError: op foo",
        }
    )
    return out


def test_aggregate_means_and_std_over_seeds(records: list[dict]) -> None:
    base, rows = aggregate(records)
    assert base is not None and base.mean("macs_removed") == 0.0
    l1 = next(r for r in rows if r.name == "l1")
    assert l1.seeds == [0, 1]
    assert l1.mean("balanced_accuracy") == pytest.approx(0.84)
    assert l1.std("balanced_accuracy") == pytest.approx(0.01)
    assert l1.mean("macs_removed") == pytest.approx(0.495)
    assert l1.class_mean("malignant") == pytest.approx(0.60)
    assert next(r for r in rows if r.name == "sfp").failed == ["UnsupportedOpError: op foo"]
    assert minority_class(records[0]) == "malignant"
    assert per_class(records[0]) == {"benign": 0.95, "malignant": 0.80}


def test_markdown_table_rows(tmp_path: Path, records: list[dict]) -> None:
    paths = write_report(
        tmp_path,
        records,
        command="medprune compare --methods l1,beta_rank",
        config_yaml="seed: 0\n",
    )
    md = paths.markdown.read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    results = [r for r in rows if r.split("|")[2].strip() in ("—", "50%")]
    names = [r.split("|")[1].strip() for r in results]
    assert names[:4] == ["base (unpruned)", "l1", "beta_rank", "sfp"]
    l1 = next(r for r in results if r.startswith("| l1 |"))
    assert "49.5% ± 0.5" in l1 and "0.840 ± 0.010" in l1 and "| 0.600 |" in l1
    assert "Minority recall (malignant)" in md
    assert "failed (1): UnsupportedOpError" in md
    assert "medprune compare --methods l1,beta_rank" in md
    assert len(paths.plots) == 4 and all(
        p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths.plots
    )


def test_html_is_self_contained(tmp_path: Path, records: list[dict]) -> None:
    page = write_report(tmp_path, records).html.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(img)[:4] == b"\x89PNG" for img in images)
    assert "<td>beta_rank</td>" in page and "<style>" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network


def test_read_jsonl_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"kind": "base", "name": "unpruned"}\n{"kind": "run", "na')
    assert read_jsonl(path) == [{"kind": "base", "name": "unpruned"}]


PROBE = (
    "<script>window.addEventListener('load', function () {"
    " var imgs = document.querySelectorAll('img');"
    " imgs.forEach(function (img, i) { img.setAttribute('data-natural-width', img.naturalWidth); });"
    " var out = document.createElement('div'); out.id = 'probe';"
    " out.setAttribute('data-rows', document.querySelectorAll('#table-0 tbody tr').length);"
    " out.setAttribute('data-images', imgs.length); document.body.appendChild(out); });</script>"
)


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


@pytest.mark.browser
def test_html_renders_in_headless_chromium(tmp_path: Path, records: list[dict]) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    html = write_report(tmp_path / "report", records).html.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
        "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    probe_div = re.search(r'<div id="probe" data-rows="(\d+)" data-images="(\d+)"', dom)
    assert probe_div is not None, dom[-2000:]
    assert int(probe_div.group(1)) == 4  # base (unpruned), l1, beta_rank, sfp
    assert int(probe_div.group(2)) == 4
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 4 and all(w > 100 for w in widths)  # every image decoded
    for name in ("base (unpruned)", "l1", "beta_rank", "sfp"):
        assert f"<td>{name}</td>" in dom


def test_segmentation_records_report_dice(tmp_path: Path) -> None:
    def seg(kind: str, name: str, dice: float) -> dict:
        return {
            "kind": kind, "name": name, "target": 0.5 if kind == "run" else 0.0, "seed": 0,
            "task": "segmentation", "class_names": ["background", "polyp"],
            "metrics": {"dice": dice, "iou": dice - 0.1, "dice_per_class": [None, dice]},
            "measurement": {"macs": 1e8 if kind == "base" else 5e7, "latency_ms": 3.0},
        }  # fmt: skip

    records = [seg("base", "unpruned", 0.80), seg("run", "taylor_gn", 0.74)]
    assert per_class(records[1]) == {"polyp": 0.74}
    fg_only = {**records[1], "metrics": {"dice_per_class": [0.7], "foreground_classes": [1]}}
    assert per_class(fg_only) == {"polyp": 0.7}  # tasks.evaluate lists foreground classes only
    assert minority_class(records[0]) == "polyp"
    md = write_report(tmp_path, records).markdown.read_text()
    assert "| Dice | IoU |" in md and "Minority Dice (polyp)" in md
    row = next(line for line in md.splitlines() if line.startswith("| taylor_gn | 50% |"))
    assert "50.0%" in row and "| 0.740 |" in row
    assert "0.740 (-6.0)" in md  # per-class Dice change from the unpruned model
