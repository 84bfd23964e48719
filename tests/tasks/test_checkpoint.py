"""Atomic checkpoints, weights-only loading and RNG round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import medprune.tasks.checkpoint as ckpt_module
from medprune.errors import CheckpointError
from medprune.tasks import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def test_round_trip_and_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ckpt.pt"
    payload = {
        "w": torch.arange(3.0),
        "epoch": 2,
        "history": [{"loss": 0.5}],
        "rng": capture_rng_state(),
    }
    save_checkpoint(path, payload)
    save_checkpoint(path, {**payload, "epoch": 3})  # overwrite in place
    loaded = load_checkpoint(path, required_keys=("w", "epoch"))
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], payload["w"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]
    with pytest.raises(CheckpointError, match=r"lacks the keys \['model'\]"):
        load_checkpoint(path, required_keys=("model",))


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"epoch": 1})

    def killed(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_module.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x00\x01 definitely not a zip")
    with pytest.raises(CheckpointError, match="garbage.pt is corrupt"):
        load_checkpoint(bad)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(listed)
    with pytest.raises(CheckpointError, match="must be a dict"):
        save_checkpoint(tmp_path / "x.pt", [1])  # type: ignore[arg-type]


def test_rng_state_round_trip(tmp_path: Path) -> None:
    state = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
