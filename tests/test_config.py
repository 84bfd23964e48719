"""Run config: defaults, YAML + override precedence, validation messages, resolved output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medprune.config import (
    RunConfig,
    build_config,
    config_to_dict,
    load_config,
    parse_set,
    save_resolved,
)
from medprune.errors import ConfigError


def _yaml(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_train_on_synthetic_data() -> None:
    config = load_config()
    assert isinstance(config, RunConfig)
    assert config.data["kind"] == "synthetic_classification"
    assert config.train.recipe.epochs >= 1
    assert config.prune.target == "macs" and 0 < config.prune.amount < 1


def test_yaml_then_set_then_flags_precedence(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path, {"seed": 3, "train": {"epochs": 7, "lr": 0.01}, "prune": {"amount": 0.3}}
    )
    assert load_config(path).train.recipe.epochs == 7
    overrides = {**parse_set(["train.epochs=2", "prune.amount=0.6"]), "train.epochs": 5}
    config = load_config(path, overrides)
    assert config.train.recipe.epochs == 5  # the dedicated flag (applied last) wins
    assert config.prune.amount == 0.6  # --set beats the file
    assert config.train.recipe.lr == 0.01 and config.seed == 3  # untouched file values stay


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'train.epoch'.*Did you mean 'train.epochs'"):
        load_config(_yaml(tmp_path, {"train": {"epoch": 3}}))
    with pytest.raises(ConfigError, match=r"Unknown config key 'prnue'.*Did you mean 'prune'"):
        build_config({"prnue": {}})
    with pytest.raises(ConfigError, match=r"prune.finetune.lrr.*Did you mean 'prune.finetune.lr'"):
        load_config(None, {"prune.finetune.lrr": 0.1})


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"train.epochs": "three"}, r"train.epochs must be an integer; got 'three'"),
        (
            {"prune.target": "flops"},
            r"prune.target must be one of 'macs', 'params', 'ratio', 'latency'; got 'flops'",
        ),
        ({"prune.amount": 1.5}, r"prune.amount must be a fraction in \[0, 1\).*got 1.5"),
        (
            {"compare.targets": [0.5, 2.0]},
            r"compare.targets must be fractions in \[0, 1\); got 2.0",
        ),
        ({"measure.threads": 0}, r"measure.threads must be > 0; got 0"),
        (
            {"data.kind": "medmnst"},
            r"data.kind must be one of .*got 'medmnst'. Did you mean 'medmnist'",
        ),
        ({"device": "tpu"}, r"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got 'tpu'"),
        (
            {"task.class_weights": "inverse"},
            r"task.class_weights must be null, 'balanced'.*'inverse'",
        ),
        (
            {"train.optimizer": "rmsprop"},
            r"train.optimizer must be one of 'sgd', 'adam', 'adamw'; got 'rmsprop'",
        ),
    ],
)
def test_bad_values_name_key_value_and_allowed(overrides: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, overrides)


def test_comma_lists_and_yaml_scalars_from_set() -> None:
    config = load_config(None, parse_set(["compare.targets=0.3,0.5", "compare.methods=l1,hrank"]))
    assert config.compare.targets == [0.3, 0.5]
    assert config.compare.methods == ["l1", "hrank"]
    assert parse_set(["train.grad_clip=null", "progress=false"]) == {
        "train.grad_clip": None,
        "progress": False,
    }
    with pytest.raises(ConfigError, match=r"--set expects KEY=VALUE.*got 'train.epochs'"):
        parse_set(["train.epochs"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping; got list"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, {"train.epochs": 2, "prune.finetune.epochs": 1, "seed": 4})
    path = save_resolved(config, tmp_path / "config.resolved.yaml")
    again = load_config(path)
    assert again == config
    assert config_to_dict(again)["prune"]["finetune"]["epochs"] == 1
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 2


def test_data_overrides_edit_the_default_data() -> None:
    config = load_config(None, {"data.n_train": 40})
    assert config.data["kind"] == "synthetic_classification" and config.data["n_train"] == 40
    replaced = load_config(None, {"data": {"kind": "medmnist", "path": "x.npz"}})
    assert replaced.data == {"kind": "medmnist", "path": "x.npz"}


@pytest.mark.parametrize(
    "example", sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
)
def test_example_configs_are_valid(example: Path) -> None:
    config = load_config(example)
    assert config.data["kind"] in ("synthetic_classification", "medmnist", "segmentation_folder")
    assert config.compare.methods and config.prune.amount == 0.5
