"""The command line: --help of every verb, exit codes, and the verbs that need no pruning engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medprune.cli.__main__ import build_parser, main

VERBS = (
    "compare",
    "config",
    "demo",
    "eval",
    "export",
    "inspect",
    "measure",
    "prune",
    "report",
    "train",
)


@pytest.mark.parametrize("verb", VERBS)
def test_help_exits_zero(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: medprune {verb}" in out


def test_all_verbs_are_discovered() -> None:
    _, verbs = build_parser()
    assert set(VERBS) <= set(verbs)


def test_config_errors_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "run.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "Did you mean 'train.epochs'" in capsys.readouterr().err
    assert main(["prune", "--set", "prune.amount=2", "--out", str(tmp_path / "o")]) == 2
    assert "prune.amount must be a fraction" in capsys.readouterr().err
    assert main(["compare", "--methods", "l1", "--targets", "half"]) == 2
    assert "--targets must be comma-separated numbers" in capsys.readouterr().err
    assert main(["measure", "--model", "tiny_cnn"]) == 2
    assert "needs --input-shape" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse usage error
        main(["export", "--format", "tflite"])
    assert exc.value.code == 2


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_measure_and_export_a_registered_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "m.json"
    args = ["measure", "--model", "tiny_cnn", "--input-shape", "1,1,16,16", "--repeats", "2"]
    assert main([*args, "--warmup", "0", "--json", str(out_json)]) == 0
    figures = json.loads(out_json.read_text())
    assert figures["macs"] > 0 and figures["params"] > 0 and figures["latency_ms"] > 0
    assert "| MACs |" in capsys.readouterr().out
    ts = tmp_path / "tiny.ts.pt"
    argv = [
        "export",
        "--model",
        "tiny_cnn",
        "--input-shape",
        "1,1,16,16",
        "--format",
        "torchscript",
    ]
    assert main([*argv, "-o", str(ts)]) == 0
    loaded = torch.jit.load(str(ts))
    assert loaded(torch.randn(2, 1, 16, 16)).shape == (2, 2)


def test_train_then_eval_measure_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    small = [
        "--set", "data.n_train=32", "--set", "data.n_val=16", "--set", "data.n_test=16",
        "--set", "data.image_size=16", "--set", "measure.onnx=false", "--set", "measure.repeats=1",
        "--model", "tiny_cnn", "--no-progress",
    ]  # fmt: skip
    assert main(["train", "--out", str(out), "--epochs", "1", *small]) == 0
    for name in ("config.resolved.yaml", "run.json", "model.pt", "report.md", "report.html"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["seed"] == 0
    assert run["environment"]["torch"] == torch.__version__
    assert "balanced_accuracy" in run["base"]["metrics"]
    assert "Minority recall" in capsys.readouterr().out
    metrics_path = tmp_path / "eval.json"
    assert main(["eval", str(out / "model.pt"), *small, "--json", str(metrics_path)]) == 0
    eval_json = json.loads(metrics_path.read_text())
    evaluated = eval_json["metrics"]
    assert evaluated["balanced_accuracy"] == pytest.approx(
        run["base"]["metrics"]["balanced_accuracy"]
    )
    assert eval_json["measurement"]["macs"] == run["base"]["measurement"]["macs"]  # MACs cell
    assert main(["measure", str(out / "model.pt"), "--repeats", "1", "--warmup", "0"]) == 0
    assert "16x16" in capsys.readouterr().out.split("input shape")[1].splitlines()[0]
    assert main(["export", str(out / "model.pt"), "--format", "onnx"]) == 0
    assert (out / "model.onnx").stat().st_size > 0
    assert main(["report", str(tmp_path / "nothing")]) == 2
