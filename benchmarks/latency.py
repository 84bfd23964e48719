"""Latency-targeted pruning vs the MACs planner on the MONAI networks of issue #11.

    .venv/bin/python benchmarks/latency.py                                   # all 5 models, torch + onnxruntime
    .venv/bin/python benchmarks/latency.py --quick                           # smaller inputs, a few minutes
    .venv/bin/python benchmarks/latency.py --models resnet18,unet --runtimes torch --repeats 30
    .venv/bin/python benchmarks/latency.py --markdown docs/results/latency.md --threads 2

Run the full benchmark on a quiet machine (nothing else running; the default 2 threads, batch 1).
For each model (random weights, eval mode) and runtime (``torch`` CPU, ``onnxruntime`` CPU):

* ``base ms``: latency of the unpruned model.
* ``macs@0.5 cut``: measured latency cut of ``l1`` pruned with ``target_macs=0.5`` (the MACs planner).
* ``lat@0.5 cut``: measured latency cut of ``l1`` pruned with ``target_latency=0.5`` (goal >= 45%),
  and ``lat MACs kept``: the fraction of MACs that model keeps.
* "at equal latency": the MACs planner's target is raised (bisection, ``--equal-steps`` tries)
  until its measured latency matches the latency planner's model; ``eq macs target`` and
  ``eq MACs kept`` compare how much compute each planner needs for the same speed.

All models of a row are measured interleaved (one forward of each in turn, ``--repeats`` rounds,
medians; ``spread`` = the largest (p90 - p10) / median among them). The latency tables are cached
(``--cache-dir``, default ``$MEDPRUNE_CACHE_DIR`` or ``~/.cache/medprune/latency``), so a second
run skips their measurement; ``planner s`` is the time the latency planner took (tables +
calibration) and ``predicted>measured`` its predicted and measured cut per calibration
measurement (the planner keeps the measured-closest plan). The markdown table goes to ``--markdown`` (and stdout), raw rows to ``--json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

import medprune as mp
from medprune.latency import get_runtime, interleaved_latency

MODELS: dict[str, tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...]]] = {
    # name: (registry name, kwargs, input shape, --quick input shape)
    "resnet18": (
        "monai.resnet18",
        {"spatial_dims": 2, "n_input_channels": 3, "num_classes": 2},
        (1, 3, 224, 224),
        (1, 3, 128, 128),
    ),
    "unet": (
        "monai.UNet",
        {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 2,
            "channels": (32, 64, 128, 256, 512),
            "strides": (2, 2, 2, 2),
            "num_res_units": 2,
        },
        (1, 1, 256, 256),
        (1, 1, 128, 128),
    ),  # fmt: skip
    "basicunet": (
        "monai.BasicUNet",
        {"spatial_dims": 2, "in_channels": 1, "out_channels": 2},
        (1, 1, 256, 256),
        (1, 1, 128, 128),
    ),
    "dynunet3d": (
        "monai.DynUNet",
        {
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "kernel_size": [3] * 5,
            "strides": [1, 2, 2, 2, 2],
            "upsample_kernel_size": [2, 2, 2, 2],
            "res_block": True,
        },
        (1, 1, 64, 64, 64),
        (1, 1, 32, 32, 32),
    ),  # fmt: skip
    "segresnet3d": (
        "monai.SegResNet",
        {"spatial_dims": 3, "init_filters": 16, "in_channels": 1, "out_channels": 2},
        (1, 1, 64, 64, 64),
        (1, 1, 32, 32, 32),
    ),
}


def _create(name: str) -> torch.nn.Module:
    registry_name, kwargs, _, _ = MODELS[name]
    if registry_name == "monai.resnet18":  # a MONAI factory function, not a class
        from monai.networks.nets import resnet18

        return resnet18(**kwargs)
    return mp.create_model(registry_name, **kwargs)


def _macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    from medprune.measure import count_macs

    return int(count_macs(model, x))


def bench_one(name: str, runtime_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One row: base, MACs planner, latency planner and the equal-latency MACs planner."""
    torch.manual_seed(0)
    shape = MODELS[name][3] if args.quick else MODELS[name][2]
    model = _create(name).eval()
    x = torch.randn(shape)
    rt = get_runtime(runtime_name, "cpu", threads=args.threads)
    lat_opts = {"threads": args.threads, "cache_dir": args.cache_dir,
                "calibrate": 2 if args.quick else 3,
                "calibration_repeats": max(5, args.repeats // 2)}  # fmt: skip
    if args.quick:
        lat_opts.update(repeats=3, max_points=6)
    base_macs = _macs(model, x)

    def macs_pruned(target: float) -> torch.nn.Module:
        return mp.prune(model, x, criterion="l1", target_macs=target, progress=False).model

    t0 = time.perf_counter()
    lat_result = mp.prune(
        model, x, criterion="l1", target_latency=args.target, latency_runtime=runtime_name,
        latency_options=lat_opts, progress=not args.no_progress,
    )  # fmt: skip
    table_s = time.perf_counter() - t0
    by_lat = lat_result.model
    calib = lat_result.history[-1].get("latency", {}).get("history", [])
    by_macs = macs_pruned(args.target)
    # equal latency: raise the MACs target until its measured latency matches by_lat's
    lo, hi, eq_t, eq_model, eq_gap = args.target, 0.95, args.target, by_macs, float("inf")
    for _ in range(args.equal_steps):
        mid = (lo + hi) / 2
        cand = macs_pruned(mid)
        t_lat, t_mac = interleaved_latency(
            [copy.deepcopy(by_lat), copy.deepcopy(cand)], x, runtime=rt, repeats=args.repeats // 2
        )
        gap = abs(t_mac.median_ms - t_lat.median_ms) / t_lat.median_ms
        if gap < eq_gap:  # keep the MACs target whose latency came closest
            eq_t, eq_model, eq_gap = mid, cand, gap
        if t_mac.median_ms > t_lat.median_ms:
            lo = mid
        else:
            hi = mid
    models = [model, by_macs, by_lat, eq_model]
    timings = interleaved_latency(
        [copy.deepcopy(m) for m in models], x, runtime=rt, repeats=args.repeats
    )
    base_ms = timings[0].median_ms
    return {
        "model": name,
        "input": "x".join(map(str, shape)),
        "runtime": runtime_name,
        "threads": args.threads,
        "base_ms": base_ms,
        "macs_cut": 1 - timings[1].median_ms / base_ms,
        "macs_macs_kept": _macs(by_macs, x) / base_macs,
        "lat_cut": 1 - timings[2].median_ms / base_ms,
        "lat_macs_kept": _macs(by_lat, x) / base_macs,
        "eq_target": eq_t,
        "eq_cut": 1 - timings[3].median_ms / base_ms,
        "eq_macs_kept": _macs(eq_model, x) / base_macs,
        "spread": max(t.spread for t in timings),
        "table_s": table_s,
        "calibration": " ".join(f"{h['predicted']:.2f}>{h['measured']:.2f}" for h in calib),
    }


COLUMNS = [
    ("model", "{}"), ("input", "{}"), ("runtime", "{}"), ("base_ms", "{:.1f}"),
    ("macs_cut", "{:.0%}"), ("lat_cut", "{:.0%}"), ("lat_macs_kept", "{:.0%}"),
    ("eq_target", "{:.2f}"), ("eq_cut", "{:.0%}"), ("eq_macs_kept", "{:.0%}"),
    ("spread", "{:.0%}"), ("table_s", "{:.0f}"), ("calibration", "{}"),
]  # fmt: skip
HEADERS = ["model", "input", "runtime", "base ms", "macs@0.5 cut", "lat@0.5 cut",
           "lat MACs kept", "eq macs target", "eq latency cut", "eq MACs kept", "spread",
           "planner s", "predicted>measured"]  # fmt: skip


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Latency-targeted pruning (l1, target {args.target}), CPU {args.threads} threads, batch 1"
        f"{', --quick inputs' if args.quick else ''}; interleaved medians of {args.repeats} rounds.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[k]) for k, fmt in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS)
    )
    parser.add_argument(
        "--runtimes", default="torch,onnxruntime", help="comma list: torch, onnxruntime"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved rounds (default 20)")
    parser.add_argument(
        "--target", type=float, default=0.5, help="fraction to remove (default 0.5)"
    )
    parser.add_argument(
        "--equal-steps", type=int, default=4, help="bisection steps for equal latency"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs, coarse tables, fewer repeats"
    )
    parser.add_argument("--cache-dir", default=None, help="latency table cache folder")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="log predicted vs measured")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 8)
        args.equal_steps = min(args.equal_steps, 2)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        for runtime_name in [r for r in args.runtimes.split(",") if r]:
            t0 = time.perf_counter()
            rows.append(bench_one(name, runtime_name, args))
            print(f"{name}/{runtime_name}: {time.perf_counter() - t0:.0f} s", flush=True)
    text = markdown(rows, args)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
