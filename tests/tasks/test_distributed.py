"""DDP with two gloo processes via torchrun, and the single-process fall-backs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from medprune.tasks import all_reduce_mean, broadcast_object, is_distributed, rank, world_size
from medprune.tasks.loaders import ShardedSampler


def test_helpers_are_identities_in_one_process() -> None:
    assert not is_distributed() and rank() == 0 and world_size() == 1
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(all_reduce_mean(t), t) and all_reduce_mean(t) is not t
    assert broadcast_object({"a": 1}) == {"a": 1}


def test_sharded_sampler_pads_to_equal_shares() -> None:
    shards = [list(ShardedSampler(range(5), rank=r, world_size=2)) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 0]]
    exact = [list(ShardedSampler(range(5), rank=r, world_size=2, pad=False)) for r in range(2)]
    assert sorted(exact[0] + exact[1]) == list(range(5))


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDPRUNE_PROGRESS_INTERVAL": "0"}
    env.pop("MEDPRUNE_PROGRESS", None)  # auto: stderr is a pipe, so plain lines
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "medprune.tasks.ddp_smoke",
        "--out",
        str(tmp_path),
        "--prune",
        "--progress",
    ]
    # One retry, only when a rank was killed by a signal: gloo has aborted a rank at exit on this
    # shared 2-core machine under load (seen once in many runs); a wrong result is never retried.
    failures = []
    for _attempt in range(2):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
        seconds = time.perf_counter() - start
        killed = "Signal" in proc.stderr or "SIGABRT" in proc.stderr
        if proc.returncode == 0 or not killed:
            break
        failures.append(proc.stderr[-2000:])
    assert proc.returncode == 0, "\n".join(failures) + proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ddp_smoke "))
    verdict = json.loads(line.removeprefix("ddp_smoke "))
    assert verdict["ok"] and verdict["same_weights"] and verdict["world_size"] == 2
    assert verdict["steps_per_rank"] == 4  # 64 samples / 2 ranks / batch 8: the data was sharded
    assert verdict["val_n"] == 30  # every validation sample counted once across ranks
    assert verdict["epochs"] == 2 and verdict["conv_filters"] == 2  # pruned between the epochs
    assert seconds < 120
    # Progress: one process (rank 0) writes a line per step (interval 0) and one when each epoch
    # ends; both ranks writing would double every count. No carriage returns (not a terminal).
    lines = proc.stderr.splitlines()
    assert sum(x.startswith("train epoch 1/2: done, 4/4 batches") for x in lines) == 1, lines
    assert sum(x.startswith("train epoch 1/2: ") for x in lines) == 5, lines
    assert sum(x.startswith("train epoch 2/2: done, 4/4 batches") for x in lines) == 1, lines
    assert "\r" not in proc.stderr


def test_two_process_medprune_train_reports_and_prints_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Audit: under torchrun every rank wrote report.md / run.json (one crashed on
    ``report.md.tmp -> report.md``) and printed the results; rank 0 alone does now."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "seed: 1\n"
        "data: {kind: synthetic_classification, n_train: 32, n_val: 8, n_test: 8, "
        "image_size: 16, seed: 0}\n"
        "model: {name: tiny_cnn, kwargs: {hidden: 8}}\n"
        "train: {batch_size: 8}\n"
        "measure: {latency: false}\n"
    )
    out = tmp_path / "runs" / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDPRUNE_PROGRESS_INTERVAL": "1"}
    env.pop("MEDPRUNE_PROGRESS", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "medprune.cli", "train", "--config", str(config), "--out", str(out), "--epochs", "1",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert time.perf_counter() - start < 60
    assert proc.stdout.count("| Method | Target | MACs removed |") == 1, proc.stdout
    assert proc.stdout.count("model, run.json and report written to") == 1, proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "config.resolved.yaml",
        "model.pt",
        "report.html",
        "report.md",
        "run.json",
        "train_state.pt",
    ]  # no *.tmp left behind by a second writer
    assert json.loads((out / "run.json").read_text())["status"] == "done"
