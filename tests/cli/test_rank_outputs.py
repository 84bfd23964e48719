"""Under ``torchrun`` only rank 0 writes the run folder and prints results; other ranks train.

The rank guard is tested here in one process with ``$RANK`` set (no process group: the helpers
of :mod:`medprune.tasks.distributed` read ``$RANK`` before one exists); the two-process run is
in ``tests/tasks/test_distributed.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medprune.cli.__main__ import main

TINY = {
    "seed": 1,
    "data": {"kind": "synthetic_classification", "n_train": 24, "n_val": 8, "n_test": 8,
             "image_size": 16, "seed": 0},
    "model": {"name": "tiny_cnn", "kwargs": {"hidden": 8}},
    "train": {"epochs": 1, "batch_size": 8},
    "prune": {"finetune": {"epochs": 1}},
    "measure": {"latency": False},
    "compare": {"methods": ["l1"], "targets": [0.3], "seeds": [1], "finetune_control": False},
}  # fmt: skip

VERBS = {
    "train": [],
    "prune": ["--criterion", "l1"],
    "compare": [],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_rank_other_than_0_writes_and_prints_nothing(
    verb: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Audit: every rank wrote report.md / run.json (one crashed on report.md.tmp) and printed
    the results."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # no process group to wait for
    monkeypatch.setenv("MEDPRUNE_PROGRESS", "off")
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "rank1"
    argv = [verb, "--config", str(config), "--out", str(out), *VERBS[verb]]
    assert main(argv) == 0  # trained (and pruned) like rank 0
    files = (
        sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) if out.exists() else []
    )
    assert files == []
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    out = tmp_path / "rank0"
    assert main([verb, "--config", str(config), "--out", str(out), *VERBS[verb]]) == 0
    assert (out / "report.md").is_file() and (out / "config.resolved.yaml").is_file()
    printed = capsys.readouterr().out
    assert printed.count("| Method | Target | MACs removed |") == 1  # the results, once
