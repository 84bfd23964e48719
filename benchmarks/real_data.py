"""The comparison on real, imbalanced medical data at 50% of MACs removed.

PneumoniaMNIST and BreastMNIST (binary classification, a small ResNet) and the Kvasir-SEG subset
(polyp segmentation, a small plain U-Net): one base model per dataset, then every method under
identical data, calibration set, seeds and fine-tuning recipe (``medprune compare``). Writes one
Markdown table per dataset under ``docs/results/`` with the command that made it, and the full
run folders (results.jsonl, report.html, plots) under ``--out``.

    python benchmarks/real_data.py                          # all three datasets (CPU: ~1 h)
    python benchmarks/real_data.py --datasets breastmnist --methods l1,hrank,beta_rank
    python benchmarks/real_data.py --quick                  # small subsets, minutes

Data: ``$MEDPRUNE_DATA`` or ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from medprune.compare import run_compare
from medprune.config import load_config
from medprune.pipeline import environment
from medprune.report import aggregate, metric_columns, minority_class, summary_markdown, task_of

ROOT = Path(__file__).resolve().parents[1]


def _medmnist(
    name: str,
    class_names: list[str],
    *,
    train: dict[str, Any],
    finetune: dict[str, Any],
    **data: Any,
) -> dict[str, Any]:
    """Overrides for a binary MedMNIST dataset: class-weighted small ResNet, 128 calibration
    images; ``data`` adds keys to the ``data`` section (e.g. ``max_train``)."""
    return {
        "data": {
            "kind": "medmnist",
            "path": f"$MEDPRUNE_DATA/{name}/{name}.npz",
            "class_names": class_names,
            **data,
        },
        "model.name": "small_resnet",
        "model.kwargs": {"base_width": 16, "blocks": [1, 1, 1, 1]},
        "task.class_weights": "balanced",
        "train": train,
        "prune.finetune": finetune,
        "prune.calibration_size": 128,
    }


DATASETS: dict[str, dict[str, Any]] = {
    "pneumoniamnist": _medmnist(
        "pneumoniamnist",
        ["normal", "pneumonia"],
        train={"epochs": 4, "lr": 0.002, "batch_size": 64},
        finetune={"epochs": 2, "lr": 0.0005},
        max_train=2000,  # stratified subsample of the 4708 (CPU budget); val/test whole
    ),
    "breastmnist": _medmnist(
        "breastmnist",
        ["malignant", "normal_or_benign"],
        train={"epochs": 15, "lr": 0.002, "batch_size": 32},
        finetune={"epochs": 5, "lr": 0.0005},
    ),
    "kvasir-seg": {
        "data": {
            "kind": "segmentation_folder",
            "path": "$MEDPRUNE_DATA/kvasir-seg",
            "image_size": 96,
        },
        "model.name": "unet",
        "model.kwargs": {"base_channels": 8, "depth": 3},
        "train": {"epochs": 12, "lr": 0.003, "batch_size": 8},
        "prune.finetune": {"epochs": 3, "lr": 0.001},
        "prune.calibration_size": 32,
    },
}
CLASSIFICATION_METHODS = "l1,fpgm,hrank,beta_rank,taylor"
SEGMENTATION_METHODS = "l1,fpgm,hrank,beta_rank,taylor,taylor_gn"
QUICK = {"data.max_train": 300, "data.max_val": 64, "data.max_test": 200}


def _overrides(name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = DATASETS[name]
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "train":
            out.update({f"train.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    seg = spec["data"]["kind"] == "segmentation_folder"
    methods = args.methods or (SEGMENTATION_METHODS if seg else CLASSIFICATION_METHODS)
    out.update(
        {
            "seed": args.seeds[0],
            "out": str(Path(args.out) / name),
            "progress": not args.no_progress,
            "compare.methods": methods,
            "compare.targets": [args.target],
            "compare.seeds": args.seeds,
            "measure.threads": 1,
            "measure.repeats": 30,
            "measure.onnx": True,
        }
    )
    if args.quick:
        out.update(QUICK)
        out["train.epochs"] = min(out.get("train.epochs", 2), 3)
        out["prune.finetune"] = {**out.get("prune.finetune", {}), "epochs": 1}
    return out


def _verdict(records: list[dict[str, Any]]) -> str:
    """Honest sentences: does beta_rank beat l1 and hrank on the minority class (recall, or Dice
    for segmentation) and on the task's main metric, at the same MACs budget?"""
    base_rec = next((r for r in records if r.get("kind") == "base"), None)
    minority = minority_class(base_rec)
    task = task_of(records)
    metric, title = metric_columns(task)[0]
    _, rows = aggregate(records)
    lines = []
    for target in sorted({r.target for r in rows if r.target > 0}):
        by_name = {r.name: r for r in rows if r.values and r.target == target}
        beta = by_name.get("beta_rank")
        if beta is None or minority is None:
            continue
        for other in ("l1", "hrank"):
            ref = by_name.get(other)
            if ref is None:
                continue
            parts = []
            for label, a, b in (
                (f"'{minority}' {'Dice' if task == 'segmentation' else 'recall'}",
                 beta.class_mean(minority), ref.class_mean(minority)),
                (title, beta.mean(metric), ref.mean(metric)),
            ):  # fmt: skip
                if a is not None and b is not None:
                    diff = 100 * (a - b)
                    word = "higher" if diff > 0 else "lower" if diff < 0 else "equal"
                    parts.append(f"{label} {abs(diff):.1f} points {word}")
            lines.append(f"- at {target:.0%} MACs: beta_rank vs {other}: " + ", ".join(parts) + ".")
    if not lines:
        return "Beta-Rank, L1 or HRank did not all run here; no verdict."
    seeds = len(next((r.seeds for r in rows if r.name == "beta_rank"), []))
    note = (
        f"({seeds} seed{'s' if seeds != 1 else ''}; differences of a few points are within noise.)"
    )
    return "\n".join(["Beta-Rank against L1 and HRank " + note, *lines])


def _write_table(name: str, records: list[dict[str, Any]], command: str) -> Path:
    seconds = sum(float(r.get(k) or 0.0) for r in records for k in ("time_s", "train_time_s"))
    env = environment()
    dest = ROOT / "docs" / "results" / f"{name}.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = [
        f"# {name}: methods at {max(r.get('target') or 0.0 for r in records):.0%} MACs removed",
        "",
        "Made by (from the repository root):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"medprune {env['medprune']}, torch {env['torch']}, monai {env['monai']}, git {env['git']}, "
        f"{env['platform']}; CPU latency with 1 thread, batch 1; compute time of the recorded "
        f"runs {seconds / 60:.1f} min (base training not included when it was not recorded).",
        "",
        summary_markdown(records),
        "",
        _verdict(records),
        "",
    ]
    dest.write_text("\n".join(text))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset")
    parser.add_argument("--methods", help="override the methods (comma-separated)")
    parser.add_argument("--target", type=float, default=0.5, help="fraction of MACs removed")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--out", default="runs/real_data", help="run folders (resumable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--quick", action="store_true", help="small subsets and epochs")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    command = "python benchmarks/real_data.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    for name in args.datasets.split(","):
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
        config = load_config(None, _overrides(name, args))
        result = run_compare(config, command=command, title=f"medprune compare: {name}")
        torch.set_num_threads(args.threads)  # measurement pins its own thread count
        path = _write_table(name, [*result.records, *result.latency], command)
        print(f"{name}: {path} (report: {result.report.html})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
