"""Issue #12.3: no verb overwrites another run's finished artefacts. ``medprune prune`` without
``--out`` next to a training run goes to a new folder; an explicit ``--out`` holding another
run's ``model.pt`` is refused (``--overwrite`` to replace it); the same run still resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.cli.__main__ import main
from medprune.config import load_config, save_resolved
from medprune.errors import ConfigError
from medprune.pipeline.folders import choose_out_dir

TINY_YAML = """\
out: {out}
progress: false
model: {{name: tiny_cnn}}
data: {{kind: synthetic_classification, n_train: 32, n_val: 16, n_test: 16, image_size: 16}}
train: {{epochs: 1, batch_size: 16}}
prune: {{criterion: l1, amount: 0.3, calibration_size: 8,
         finetune: {{epochs: 1, max_steps_per_epoch: 1}}}}
measure: {{repeats: 1, warmup: 0, onnx: false}}
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_prune_next_to_a_training_run_leaves_it_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's steps: ``medprune train --out R`` then ``medprune prune --checkpoint
    R/model.pt`` with ``out: R`` in the config and no ``--out``."""
    run_dir = tmp_path / "R"
    config = tmp_path / "run.yaml"
    config.write_text(TINY_YAML.format(out=run_dir))
    assert main(["train", "--config", str(config), "--out", str(run_dir)]) == 0
    trained = _files(run_dir)
    assert "model.pt" in trained
    capsys.readouterr()

    assert main(["prune", "--config", str(config), "--checkpoint", str(run_dir / "model.pt")]) == 0
    assert _files(run_dir) == trained  # model.pt, run.json, config, reports: all untouched
    new = run_dir / "prune-l1-0.3"
    out = capsys.readouterr().out
    assert (
        f"{run_dir} holds the finished train run (model.pt); writing this prune run to {new} "
        f"instead so as not to overwrite it" in out
    )
    assert f"report in {new}" in out
    record = json.loads((new / "run.json").read_text())
    assert record["status"] == "done" and record["verb"] == "prune"
    assert record["base_source"] == str(run_dir / "model.pt")
    assert (new / "model.pt").is_file() and (new / "plan.json").is_file()

    # an explicit --out at the training run is refused, naming the fix
    argv = ["prune", "--config", str(config), "--checkpoint", str(run_dir / "model.pt")]
    assert main([*argv, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"--out {run_dir} already holds the finished train run (model.pt)" in err
    assert "another --out folder, or pass --overwrite" in err
    # ... and --overwrite does not let a run overwrite the very model it prunes
    assert main([*argv, "--out", str(run_dir), "--overwrite"]) == 2
    assert "is the model.pt medprune prune would write" in capsys.readouterr().err
    assert _files(run_dir) == trained


def test_train_into_a_finished_training_run_of_another_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "R"
    config = tmp_path / "run.yaml"
    config.write_text(TINY_YAML.format(out=run_dir))
    assert main(["train", "--config", str(config)]) == 0
    trained = _files(run_dir)
    assert main(["train", "--config", str(config), "--lr", "0.5", "--out", str(run_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--lr", "0.5"]) == 0
    assert _files(run_dir) == trained
    sibling = tmp_path / "R-2"
    assert (sibling / "model.pt").is_file()
    assert f"model, run.json and report written to {sibling}" in capsys.readouterr().out


# ------------------------------------------------------ folder rules on hand-made run folders
def _fake_run(folder: Path, config_overrides: dict, *, verb: str, finished: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_resolved(load_config(None, config_overrides), folder / "config.resolved.yaml")
    run = {"command": f"medprune {verb} --out {folder}", "status": "done" if finished else
           "interrupted"}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(run))  # an older folder: no "verb" recorded
    if finished:
        (folder / "model.pt").write_bytes(b"weights")


def test_the_same_run_resumes_in_its_folder_and_other_runs_move_aside(tmp_path: Path) -> None:
    ours = {"out": str(tmp_path / "R"), "prune.criterion": "l1", "prune.amount": 0.5}
    config = load_config(None, ours)

    def choose(out: Path | None = None, **kw: object) -> Path:
        return choose_out_dir(config, verb="prune", out=out, stem="prune-l1-0.5", **kw)

    assert choose() == tmp_path / "R"  # nothing there yet
    _fake_run(tmp_path / "R", ours, verb="prune", finished=False)
    assert choose() == tmp_path / "R"  # our interrupted run: continue it
    (tmp_path / "R" / "model.pt").write_bytes(b"weights")
    assert choose() == tmp_path / "R"  # our finished run: a rerun of the same command
    assert choose(tmp_path / "R") == tmp_path / "R"

    other = {**ours, "prune.amount": 0.7}
    _fake_run(tmp_path / "O", other, verb="prune", finished=False)
    assert choose(tmp_path / "O") == tmp_path / "O"  # interrupted, nothing finished to keep
    _fake_run(tmp_path / "O", other, verb="prune", finished=True)
    with pytest.raises(ConfigError, match="finished prune run of another configuration"):
        choose(tmp_path / "O")
    assert choose(tmp_path / "O", overwrite=True) == tmp_path / "O"

    said: list[str] = []
    config = load_config(None, {**ours, "out": str(tmp_path / "O")})
    taken = tmp_path / "O" / "prune-l1-0.5"
    _fake_run(taken, other, verb="prune", finished=False)  # someone else's, even unfinished
    got = choose_out_dir(config, verb="prune", out=None, stem="prune-l1-0.5", say=said.append)
    assert got == tmp_path / "O" / "prune-l1-0.5-2"
    assert said and f"writing this prune run to {got} instead" in said[0]
    _fake_run(got, {**ours, "out": str(tmp_path / "O")}, verb="prune", finished=False)
    again = choose_out_dir(config, verb="prune", out=None, stem="prune-l1-0.5")
    assert again == got  # rerunning the interrupted command continues where it went


def test_compare_next_to_a_training_run_goes_to_a_compare_folder(tmp_path: Path) -> None:
    _fake_run(tmp_path / "R", {}, verb="train", finished=True)
    config = load_config(None, {"out": str(tmp_path / "R")})
    got = choose_out_dir(config, verb="compare", out=None, stem="compare", say=lambda _m: None)
    assert got == tmp_path / "R" / "compare"
    with pytest.raises(ConfigError, match="holds the finished train run"):
        choose_out_dir(config, verb="compare", out=tmp_path / "R", stem="compare")
    (tmp_path / "C").mkdir()
    (tmp_path / "C" / "results.jsonl").write_text('{"kind": "base"}\n')
    save_resolved(config, tmp_path / "C" / "config.resolved.yaml")
    # a comparison resumes in its folder (its own checks allow the grid to grow) ...
    assert choose_out_dir(config, verb="compare", out=tmp_path / "C") == tmp_path / "C"
    # ... but train / prune do not write into it
    with pytest.raises(ConfigError, match="finished compare run \\(results.jsonl\\)"):
        choose_out_dir(config, verb="train", out=tmp_path / "C")


def test_a_second_prune_moved_to_a_new_folder_reuses_the_trained_base(tmp_path: Path) -> None:
    """``medprune prune`` twice (no checkpoint, other amounts) with ``out: R``: the second run
    goes to ``R/prune-l1-0.4`` and reuses ``R/base/model.pt`` instead of training again."""
    run_dir = tmp_path / "R"
    config = tmp_path / "run.yaml"
    config.write_text(TINY_YAML.format(out=run_dir))
    assert main(["prune", "--config", str(config)]) == 0
    base = run_dir / "base" / "model.pt"
    assert base.is_file()
    before = base.read_bytes()
    assert main(["prune", "--config", str(config), "--target-macs", "0.4"]) == 0
    record = json.loads((run_dir / "prune-l1-0.4" / "run.json").read_text())
    assert record["base_source"] == str(base)
    assert base.read_bytes() == before
