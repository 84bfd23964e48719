"""Consistent flags (issue #12 point 7): no abbreviations, one spelling of the model keyword
arguments in every verb (old spellings warn), ``inspect --config``, and ``medprune config``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from medprune.cli.__main__ import build_parser, main
from medprune.config import schema_markdown

TINY = {
    "seed": 1,
    "data": {"kind": "synthetic_classification", "n_train": 24, "n_val": 8, "n_test": 8,
             "image_size": 16, "seed": 0},
    "model": {"name": "tiny_cnn", "kwargs": {"hidden": 8}},
}  # fmt: skip


def _parsers() -> list[argparse.ArgumentParser]:
    parser, _ = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *sub.choices.values()]


def test_no_parser_accepts_abbreviations(capsys: pytest.CaptureFixture[str]) -> None:
    assert all(p.allow_abbrev is False for p in _parsers())
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epoch", "3"])  # --epochs, abbreviated
    assert exc.value.code == 2
    assert "unrecognized arguments: --epoch 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prune", "--target-mac", "0.5"])


def test_an_unknown_flag_shows_the_verbs_usage_and_a_did_you_mean(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epoch", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("usage: medprune train ") and "[--epochs EPOCHS]" in err
    assert "medprune train: error: unrecognized arguments: --epoch 3; did you mean --epochs?" in err
    with pytest.raises(SystemExit):
        main(["measure", "--repeat=3"])
    assert "did you mean --repeats?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--zzzz"])
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess


def test_a_deprecated_flag_warns_in_one_plain_line(
    capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    argv = ["measure", "--model", "tiny_cnn", "--input-shape", "1,1,16,16", "--repeats", "1"]
    assert main([*argv, "--warmup", "1", "--model-arg", "in_channels=1"]) == 0
    err = capsys.readouterr().err
    assert "medprune measure: warning: --model-arg is deprecated and will be removed; use " \
        "--model-kwargs." in err  # fmt: skip
    assert "argparse" not in err and "Warning" not in err  # no file:line of argparse.py
    assert not [w for w in recwarn if "--model-arg" in str(w.message)]


def test_the_same_flag_names_in_every_verb() -> None:
    flags = {p.prog.split()[-1]: set(p._option_string_actions) for p in _parsers()[1:]}
    for verb in ("train", "prune", "compare", "eval", "demo"):
        assert {"--config", "--set", "--out", "--seed", "--device"} <= flags[verb], verb
    for verb in ("train", "prune", "compare", "eval", "measure", "export", "inspect"):
        assert {"--model", "--model-kwargs"} <= flags[verb], verb
    assert {"--config", "--set", "--seed"} <= flags["inspect"]
    assert "--targets" in flags["demo"] and "--targets" in flags["compare"]


def test_model_kwargs_flag_reaches_the_config(tmp_path: Path) -> None:
    from medprune.cli._common import config_from_args

    parser, _ = build_parser()
    args = parser.parse_args(
        ["train", "--set", "model.kwargs.width=8", "--model-kwargs", "width=6", "depth=[1,2]"]
    )
    assert config_from_args(args).model.kwargs == {"width": 6, "depth": [1, 2]}
    with pytest.warns(FutureWarning, match="--model-arg is deprecated.*--model-kwargs"):
        old = parser.parse_args(["measure", "--model-arg", "a=1", "--model-kwargs", "b=2"])
    assert old.model_kwargs == ["a=1", "b=2"]
    with pytest.warns(FutureWarning, match="--target is deprecated.*--targets"):
        demo = parser.parse_args(["demo", "--target", "0.4"])
    assert demo.targets == "0.4"


def test_model_kwargs_errors_say_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["measure", "--model", "tiny_cnn", "--input-shape", "1,1,16,16", "--model-kwargs"]
    assert main([*argv, "width"]) == 2
    err = capsys.readouterr().err
    assert "--model-kwargs must be a JSON object or KEY=VALUE items" in err and "'width'" in err


LAST = re.compile(r"^equivalence: max_abs_diff=(\S+) groups=(\d+) pinned=(\d+) macs_before=(\d+)")


def test_inspect_takes_a_run_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["inspect", "--config", str(path), "--max-rows", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "input: (1, 1, 16, 16)" in out[0]  # measure.batch_size, the data's channels and size
    match = LAST.match(out[-1])
    assert match and float(match.group(1)) <= 1e-9 and int(match.group(2)) >= 2
    # flags override the config: another width via --model-kwargs, another input shape
    argv = ["inspect", "--config", str(path), "--model-kwargs", "hidden=4"]
    assert main([*argv, "--input-shape", "2,1,16,16"]) == 0
    assert "input: (2, 1, 16, 16)" in capsys.readouterr().out
    assert main(["inspect", "--model", "tiny_cnn"]) == 2
    assert "--input-shape B,C,H,W, or --config run.yaml" in capsys.readouterr().err


def test_config_verb_prints_the_resolved_config_or_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["config", "--config", str(path), "--set", "train.epochs=1"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["train"]["epochs"] == 1 and resolved["model"]["name"] == "tiny_cnn"
    assert resolved["prune"]["finetune"]["lr"] == 5e-4  # defaults filled in
    path.write_text("prune:\n  amout: 0.5\n")
    assert main(["config", "--config", str(path)]) == 2
    assert "Did you mean 'prune.amount'?" in capsys.readouterr().err
    assert main(["config", "--schema"]) == 0
    assert capsys.readouterr().out == schema_markdown()


ALL = ("train", "prune", "compare")


@pytest.mark.parametrize(
    ("setting", "message", "verbs"),
    [
        ("prune.criterion=betarank", "Unknown method or criterion 'betarank'. Did you mean "
                                     "'beta_rank'?", ("prune",)),
        ("task.loss=dicece", "Unknown classification loss 'dicece'. Available: ce, ", ALL),
        ("data.imagesize=3", "Unknown config key 'data.imagesize'. Did you mean "
                             "'data.image_size'?", ALL),
        ("model.kwargs.widht=3", "model 'tiny_cnn' cannot be built with unknown keyword "
                                 "arguments ['widht']", ALL),
        ("compare.methods=[l1,fgpm]", "Unknown method or criterion 'fgpm'. Did you mean 'fpgm'?",
         ("compare",)),
        ("task.kind=segmentation", "task.kind is 'segmentation' but the data", ALL),
    ],
)  # fmt: skip
def test_config_verb_runs_the_checks_train_and_prune_run_first(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setting: str,
    message: str,
    verbs: tuple[str, ...],
) -> None:
    """Audit: ``medprune config --set prune.criterion=betarank`` printed the config as valid."""
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["config", "--config", str(path), "--set", setting]) == 2
    out, err = capsys.readouterr()
    assert f"medprune config: error: {message}" in err and out == ""
    out_dir = tmp_path / "run"
    for verb in verbs:  # the verbs that run this check refuse it before any work
        argv = [verb, "--config", str(path), "--set", setting, "--out", str(out_dir)]
        assert main(argv) == 2
        assert f"medprune {verb}: error: {message}" in capsys.readouterr().err
    assert not out_dir.exists()  # refused before the run folder was made
