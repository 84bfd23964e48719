"""Issue #12 point 8: reports name the classes, show the method as a user names it, fill the
MACs cells (dense MACs for masked runs, said so) and open with a paragraph naming the method that
kept the rare class best at each budget."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from medprune.cli.__main__ import main
from medprune.data import SegmentationFolder, build_splits, load_medmnist
from medprune.errors import ConfigError
from medprune.report import aggregate, method_label, summary_markdown, write_report


def _md_tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table of ``md`` as rows of stripped cells (header row first)."""
    tables, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


def _column(table: list[list[str]], header: str) -> list[str]:
    i = table[0].index(header)
    return [row[i] for row in table[1:]]


# ----------------------------------------------------------------------------- class names
def _write_npz(path: Path, n_classes: int = 2) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (6, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(6) % n_classes).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def test_medmnist_files_carry_their_official_class_names(tmp_path: Path) -> None:
    breast = _write_npz(tmp_path / "breastmnist.npz")
    assert load_medmnist(breast, "test").class_names == ("malignant", "normal, benign")
    sized = _write_npz(tmp_path / "pneumoniamnist_64.npz")  # MedMNIST+ larger sizes
    splits = build_splits({"kind": "medmnist", "path": str(sized)})
    assert splits.class_names == ("normal", "pneumonia")
    assert load_medmnist(_write_npz(tmp_path / "mine.npz"), "val").class_names == ("0", "1")
    relabelled = _write_npz(tmp_path / "breastmnist3.npz", n_classes=3)
    assert load_medmnist(relabelled, "val").class_names == ("0", "1", "2")  # not the 2-class set
    given = load_medmnist(breast, "val", class_names=["bad", "good"])
    assert given.class_names == ("bad", "good")  # the user's names win


@pytest.mark.data
def test_real_datasets_name_their_classes(data_dir: Path) -> None:
    pneumonia = load_medmnist(data_dir / "pneumoniamnist" / "pneumoniamnist.npz", "test")
    assert pneumonia.class_names == ("normal", "pneumonia")  # SOURCE.md: 0 normal, 1 pneumonia
    breast = load_medmnist(data_dir / "breastmnist" / "breastmnist.npz", "test")
    assert breast.class_names[0] == "malignant"  # SOURCE.md: 0 malignant, 1 normal, benign
    kvasir = SegmentationFolder(data_dir / "kvasir-seg", split="val", image_size=16)
    assert kvasir.class_names == ("background", "polyp")


def _seg_folder(root: Path, kvasir: bool) -> Path:
    from PIL import Image

    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 90, 30, 60)).save(root / "images" / f"a{i}.png")
        mask = np.zeros((8, 8), dtype=np.uint8)
        mask[2:5, 2:5] = 255
        Image.fromarray(mask).save(root / "masks" / f"a{i}.png")
    if kvasir:
        (root / "kavsir_bboxes.json").write_text(json.dumps({"a0": {"bbox": []}}))
    return root


def test_segmentation_folder_names(tmp_path: Path) -> None:
    kvasir = _seg_folder(tmp_path / "kvasir", kvasir=True)
    assert SegmentationFolder(kvasir, image_size=8).class_names == ("background", "polyp")
    plain = _seg_folder(tmp_path / "plain", kvasir=False)
    assert SegmentationFolder(plain, image_size=8).class_names == ("background", "foreground")
    spec = {"kind": "segmentation_folder", "path": str(plain), "image_size": 8,
            "class_names": ["background", "lesion"], "val_fraction": 0.25, "test_fraction": 0.25}  # fmt: skip
    assert build_splits(spec).class_names == ("background", "lesion")
    with pytest.raises(ConfigError, match=r"two names .*got \['lesion'\]"):
        SegmentationFolder(plain, image_size=8, class_names=["lesion"])


def _clf(kind: str, name: str, target: float, seed: int, rare: float, **extra: object) -> dict:
    """A classification record shaped like pipeline.runs' (rare class 1: 40 test images)."""
    record = {
        "kind": kind, "name": name, "target": target, "seed": seed, "status": "ok",
        "task": "classification", "class_names": ["normal", "pneumonia"], "target_kind": "macs",
        "metrics": {
            "balanced_accuracy": (0.9 + rare) / 2, "macro_f1": 0.8, "auc_roc": 0.9,
            "per_class": [{"class": 0, "recall": 0.9, "support": 160},
                          {"class": 1, "recall": rare, "support": 40}],
            "minority_class": 1,
        },
        "measurement": {"macs": 1e6 * (1 - target), "params": 5e4 * (1 - target),
                        "latency_ms": 1.0},
        "summary": {"macs_removed": target, "params_removed": target} if kind == "run" else {},
    }  # fmt: skip
    record.update(extra)
    return record


def test_default_class_names_read_class_k_not_digits(tmp_path: Path) -> None:
    records = [_clf("base", "unpruned", 0.0, 0, 0.7), _clf("run", "l1", 0.5, 0, 0.6)]
    for r in records:
        r["class_names"] = ["0", "1"]  # what a dataset without names gives
    md = write_report(tmp_path, records, plots=False).markdown.read_text()
    per_class = _md_tables(md)[1]
    assert per_class[0] == ["Method", "Target", "class 0", "class 1"]
    assert "Minority recall (class 1)" in md and "class 1 recall" in md


# ----------------------------------------------------------------------------- end to end
def test_compare_report_names_methods_classes_and_fills_macs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's steps: one ``medprune compare`` on synthetic data, then read report.md."""
    out = tmp_path / "cmp"
    cmd = [
        "compare", "--out", str(out), "--methods", "l1,sfp,lottery", "--targets", "0.5",
        "--model", "tiny_cnn", "--epochs", "1", "--finetune-epochs", "0", "--no-progress",
        "--set", "data.n_train=32", "--set", "data.n_val=16", "--set", "data.n_test=16",
        "--set", "data.image_size=16", "--set", "measure.onnx=false", "--set", "measure.repeats=1",
        "--set", "measure.warmup=0", "--set", "prune.calibration_size=8",
    ]  # fmt: skip
    assert main(cmd) == 0
    stdout = capsys.readouterr().out
    md = (out / "report.md").read_text()
    results, per_class = _md_tables(md)[:2]
    assert _column(results, "Method") == ["base (unpruned)", "oneshot (l1)", "sfp", "lottery"]
    assert per_class[0] == ["Method", "Target", "normal", "rare"]  # names, not 0 / 1
    assert "Minority recall (rare)" in results[0]
    macs = _column(results, "MACs")
    assert all(re.fullmatch(r"\d+(\.\d+)?[kMG]?( \(dense\))?", c) for c in macs), macs
    assert macs[-1].endswith("(dense)") and macs[-1].split()[0] == macs[0]  # lottery: dense
    assert _column(results, "MACs removed")[-1] == "0.0% (dense)"
    assert md.index("## Summary") < md.index("## Results")
    summary = md.split("## Summary\n\n")[1].split("\n")[0]
    assert summary.startswith("At 50% MACs removed, ") and "rare recall" in summary
    assert "Left out: lottery" in summary
    assert summary in stdout  # the terminal shows it too
    page = (out / "report.html").read_text()
    assert "<h2>Summary</h2>" in page and "<td>oneshot (l1)</td>" in page


# ----------------------------------------------------------------------------- method column
def test_method_labels() -> None:
    run = {"kind": "run", "name": "beta_rank", "method": "oneshot", "criterion": "beta_rank"}
    assert method_label(run) == "oneshot (beta_rank)"
    it = {"kind": "run", "name": "iterative", "method": "iterative", "criterion": "taylor"}
    assert method_label(it) == "iterative (taylor)"
    for name in ("sfp", "mfp", "sauron", "lottery"):
        assert method_label({"kind": "run", "name": name, "method": name}) == name
    control = {"kind": "run", "name": "finetune_only", "method": None}
    assert method_label(control) == "finetune_only (control)"
    assert method_label({"kind": "base", "name": "unpruned"}) == "base (unpruned)"
    # "oneshot" under prune.criterion l1 and "l1" are the same method: their grid names differ
    same = [
        _clf("run", n, 0.5, 0, 0.6, method="oneshot", criterion="l1") for n in ("l1", "oneshot")
    ]
    _, rows = aggregate(same)
    assert [r.label for r in rows] == ["oneshot (l1) [l1]", "oneshot (l1) [oneshot]"]


def test_macs_come_from_the_summary_when_a_record_has_no_measurement(tmp_path: Path) -> None:
    base = _clf("base", "unpruned", 0.0, 0, 0.7)
    run = _clf("run", "l1", 0.5, 0, 0.6, method="oneshot", criterion="l1")
    del run["measurement"]
    run["summary"].update(macs_after=480_000, params_after=26_000)
    masked = _clf("run", "lottery", 0.5, 0, 0.65, method="lottery", masked=True)
    del masked["measurement"]
    masked["summary"].update(macs_after=1e6, params_before=5e4, params_after=2.5e4, macs_removed=0)
    results = _md_tables(
        write_report(tmp_path, [base, run, masked], plots=False).markdown.read_text()
    )[0]
    assert _column(results, "MACs") == ["1.00M", "480.00k", "1.00M (dense)"]
    assert _column(results, "Params") == ["50.00k", "26.00k", "50.00k (dense)"]
    assert _column(results, "Params removed")[-1] == "50.0% (nonzero)"


# ----------------------------------------------------------------------------- summary
def _grid(rare: dict[tuple[str, float], list[float]]) -> list[dict]:
    """Base + control + one record per (method, target, seed) with the given rare recalls."""
    out = [_clf("base", "unpruned", 0.0, 0, 0.70)]
    out += [_clf("run", "finetune_only", 0.0, s, 0.72) for s in range(3)]
    for (name, target), values in rare.items():
        method = name if name in ("sauron", "sfp") else "oneshot"
        crit = None if method != "oneshot" else name
        out += [
            _clf("run", name, target, s, v, method=method, criterion=crit)
            for s, v in enumerate(values)
        ]
    return out


def _summary(records: list[dict]) -> str:
    return summary_markdown(records).split("\n\n")[0]


def test_summary_names_the_best_method_per_budget_and_follows_the_numbers() -> None:
    grid = {
        ("sauron", 0.3): [0.80, 0.82, 0.81], ("beta_rank", 0.3): [0.60, 0.62, 0.61],
        ("sauron", 0.5): [0.50, 0.52, 0.51], ("beta_rank", 0.5): [0.66, 0.68, 0.64],
    }  # fmt: skip
    text = _summary(_grid(grid))
    assert text == (
        "At 30% MACs removed, sauron kept pneumonia recall best (0.810 ± 0.008 vs base 0.700; "
        "finetune_only (control) 0.720); oneshot (beta_rank) was second (0.610 ± 0.008). "
        "The difference is larger than the seed spread (mean ± std over 3 seeds). "
        "At 50% MACs removed, oneshot (beta_rank) kept pneumonia recall best (0.660 ± 0.016 "
        "vs base 0.700; finetune_only (control) 0.720); sauron was second (0.510 ± 0.008). "
        "The difference is larger than the seed spread (mean ± std over 3 seeds)."
    )
    swapped = copy.deepcopy(grid)
    swapped[("sauron", 0.3)], swapped[("beta_rank", 0.3)] = (
        grid[("beta_rank", 0.3)],
        grid[("sauron", 0.3)],
    )
    first = _summary(_grid(swapped)).split(" At 50%")[0]
    assert first.startswith("At 30% MACs removed, oneshot (beta_rank) kept pneumonia recall best")
    assert "sauron was second (0.610 ± 0.008)" in first


def test_summary_says_when_the_gap_is_within_noise() -> None:
    close = {("sauron", 0.5): [0.70, 0.76, 0.73], ("beta_rank", 0.5): [0.72, 0.70, 0.71]}
    assert "The difference is within the seed spread (mean ± std over 3 seeds)." in _summary(
        _grid(close)
    )
    one_seed = {("sauron", 0.5): [0.75], ("beta_rank", 0.5): [0.70]}
    text = _summary(_grid(one_seed))
    # sqrt((0.75 * 0.25 + 0.7 * 0.3) / 40) = 0.0997 > 0.05 gap: within one standard error
    assert (
        "The difference is within one test-set standard error (0.100; 1 seed, 40 pneumonia "
        "test images)." in text
    )
    far = {("sauron", 0.5): [0.95], ("beta_rank", 0.5): [0.40]}
    assert "larger than one test-set standard error" in _summary(_grid(far))


def test_summary_leaves_out_masked_runs_and_flags_a_missed_budget() -> None:
    records = _grid({("sauron", 0.5): [0.90], ("beta_rank", 0.5): [0.60]})
    records[-2]["summary"]["macs_removed"] = 0.1  # sauron stopped short of the budget
    lottery = _clf("run", "lottery", 0.5, 0, 0.99, method="lottery", masked=True,
                   target_kind="params")  # fmt: skip
    text = _summary([*records, lottery])
    assert text.startswith(
        "At 50% MACs removed, sauron (only 10% removed) kept pneumonia recall best (0.900"
    )
    assert text.endswith("Left out: lottery (masks zero weights but keep the dense MACs).")


def test_summary_for_segmentation_uses_foreground_dice() -> None:
    def seg(kind: str, name: str, dice: float, sd: float) -> dict:
        return {
            "kind": kind, "name": name, "target": 0.5 if kind == "run" else 0.0, "seed": 0,
            "task": "segmentation", "class_names": ["background", "polyp"],
            "method": name if kind == "run" else None,
            "metrics": {"dice": dice, "iou": dice - 0.1, "dice_per_class": [dice],
                        "dice_std_per_class": [sd], "foreground_classes": [1],
                        "n_images_per_class": [25]},
            "measurement": {"macs": 1e8 if kind == "base" else 5e7, "latency_ms": 3.0},
        }  # fmt: skip

    records = [seg("base", "unpruned", 0.80, 0.2), seg("run", "mfp", 0.74, 0.2),
               seg("run", "sfp", 0.70, 0.25)]  # fmt: skip
    text = _summary(records)
    # sqrt((0.2**2 + 0.25**2) / 25) = 0.064 > 0.04 gap
    assert text == (
        "At 50% MACs removed, mfp kept polyp Dice best (0.740 vs base 0.800); sfp was second "
        "(0.700). The difference is within one test-set standard error (0.064; 1 seed, 25 test "
        "images containing polyp)."
    )


def test_segmentation_metrics_record_the_per_image_dice_spread() -> None:
    import torch

    from medprune.tasks.metrics import segmentation_metrics

    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, :2, :2] = 1
    pred = target.clone()
    pred[1, 0, 0] = 0  # image 1: Dice 6/7, image 0: Dice 1
    m = segmentation_metrics(pred, target, 2, hd95=False)
    assert m["dice_std_per_class"][0] == pytest.approx(np.std([1.0, 6 / 7]))


def test_summary_of_a_single_prune_run() -> None:
    records = [_clf("base", "unpruned", 0.0, 0, 0.70)]
    records.append(_clf("run", "l1", 0.4, 0, 0.6, method="oneshot", criterion="l1"))
    assert _summary(records) == (
        "At 40% MACs removed, oneshot (l1) kept pneumonia recall at 0.600 (vs base 0.700)."
    )
    assert summary_markdown(records[:1]).startswith("| Method |")  # base only: no summary


def test_summary_warns_when_the_leader_calls_everything_the_rare_class() -> None:
    records = _grid({("l1", 0.5): [1.0], ("beta_rank", 0.5): [0.6]})
    for per_class in records[-2]["metrics"]["per_class"][:1]:
        per_class["recall"] = 0.0  # l1: every image called pneumonia
    text = _summary(records)
    assert text.startswith("At 50% MACs removed, oneshot (l1) kept pneumonia recall best (1.000")
    assert text.endswith(
        "Caution: oneshot (l1) almost never predicts the other class (normal recall 0.000)."
    )


def test_a_failed_cell_keeps_its_method_label(tmp_path: Path) -> None:
    from medprune.compare import make_grid, run_grid

    def boom(cell: object) -> dict:
        raise RuntimeError("engine cannot prune op foo")

    def describe(cell: object) -> dict:
        return {"method": "oneshot", "criterion": "l1"}

    cells = make_grid(["l1"], [0.5], [0])
    records = run_grid(cells, boom, tmp_path / "r.jsonl", progress=False, describe=describe)
    base = _clf("base", "unpruned", 0.0, 0, 0.7)
    _, (row,) = aggregate([base, *records])
    assert row.label == "oneshot (l1)" and row.failed == [
        "RuntimeError: engine cannot prune op foo"
    ]
    assert _summary([base, *records]) == (
        "At 50% MACs removed, no run has a pneumonia recall. Failed: oneshot (l1)."
    )


def test_summary_says_so_when_no_method_found_the_rare_class() -> None:
    text = _summary(_grid({("l1", 0.5): [0.0], ("taylor", 0.5): [0.0]}))
    assert text.startswith(
        "At 50% MACs removed, no method found the pneumonia class (pneumonia recall 0.000 for "
        "every method vs base 0.700"
    )
    assert "tied" not in text


def test_summary_and_target_cell_of_a_latency_budget(tmp_path: Path) -> None:
    records = _grid({("l1", 0.3): [0.6], ("taylor", 0.3): [0.5]})
    for r in records[1:]:
        r["target_kind"] = "latency"
    text = _summary(records)
    assert text.startswith("At a 30% latency-cut target, oneshot (l1) kept pneumonia recall best")
    md = write_report(tmp_path, records, plots=False).markdown.read_text()
    assert "| oneshot (l1) | 30% latency |" in md
