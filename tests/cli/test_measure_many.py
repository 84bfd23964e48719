"""``medprune measure a/model.pt b/model.pt``: several models timed interleaved in one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.cli.__main__ import main
from medprune.models import create_model
from medprune.tasks import save_checkpoint


def _save(path: Path, hidden: int, shape: list[int]) -> Path:
    kwargs = {"in_channels": 1, "num_classes": 2, "hidden": hidden}
    model = create_model("tiny_cnn", **kwargs)
    payload = {
        "state_dict": model.state_dict(),
        "model_name": "tiny_cnn",
        "model_kwargs": json.dumps(kwargs),
        "input_shape": shape,
        "plan": None,
    }
    path.parent.mkdir(parents=True)
    save_checkpoint(path, payload)
    return path


def test_measure_several_checkpoints_interleaved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _save(tmp_path / "a" / "model.pt", 64, [1, 1, 16, 16])
    b = _save(tmp_path / "b" / "model.pt", 4, [1, 1, 16, 16])
    out_json = tmp_path / "m.json"
    argv = ["measure", str(a), str(b), str(a), "--repeats", "6", "--warmup", "1"]
    assert main([*argv, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert f"| figure | {a} | {b} | {a}#2 |" in out
    assert "median of 6 interleaved runs of 4 models, 1 thread" in out  # + the A/A copy
    assert "are noise (A/A check: one model measured twice" in out
    figures = json.loads(out_json.read_text())
    models = figures["models"]
    assert list(models) == [str(a), str(b), f"{a}#2"]
    assert models[str(a)]["macs"] > models[str(b)]["macs"] > 0
    assert all(m["latency_ms"] > 0 and m["latency_spread_pct"] >= 0 for m in models.values())
    torch_run = figures["latency"]["latency_ms"]
    assert torch_run["noise"]["aa_diff_pct"] is not None
    assert all(r["interleaved"] for r in torch_run["results"].values())


def test_several_checkpoints_of_other_shapes_need_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _save(tmp_path / "a" / "model.pt", 4, [1, 1, 16, 16])
    b = _save(tmp_path / "b" / "model.pt", 4, [1, 1, 24, 24])
    assert main(["measure", str(a), str(b), "--repeats", "1"]) == 2
    assert "pass --input-shape B,C,H,W" in capsys.readouterr().err
    argv = ["measure", str(a), str(b), "--repeats", "2", "--warmup", "0"]
    assert main([*argv, "--input-shape", "1,1,16,16"]) == 0
    assert "interleaved runs of 3 models" in capsys.readouterr().out
