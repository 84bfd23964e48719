"""Run config: defaults, YAML + override precedence, validation messages, resolved output."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from medprune.config import (
    RECIPE_KEYS,
    RecipeConfig,
    RunConfig,
    build_config,
    config_to_dict,
    load_config,
    parse_set,
    save_resolved,
    schema_markdown,
    update_config,
)
from medprune.errors import ConfigError
from medprune.tasks import TrainRecipe


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
        ({"train.epochs": "three"}, r"train.epochs must be an integer >= 0; got 'three'"),
        (
            {"prune.target": "flops"},
            r"prune.target must be one of 'macs', 'params', 'ratio', 'latency'; got 'flops'",
        ),
        ({"prune.amount": 1.5}, r"prune.amount must be a fraction in \[0, 1\).*got 1.5"),
        (
            {"compare.targets": [0.5, 2.0]},
            r"compare.targets\[1\] must be a fraction in \[0, 1\); got 2.0",
        ),
        ({"measure.threads": 0}, r"measure.threads must be an integer > 0; got 0"),
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
    kinds = ("synthetic_classification", "medmnist", "segmentation_folder", "nifti_folder")
    assert config.data["kind"] in kinds
    assert config.compare.methods and config.prune.amount == 0.5


# ----------------------------------------------------------------------------- issue #12 point 7
def test_user_yaml_with_a_typo_key_names_it_and_suggests_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_yaml(tmp_path, {"prune": {"amout": 0.5}}))
    message = str(exc.value)
    assert "'prune.amout'" in message and "Did you mean 'prune.amount'?" in message
    assert "Allowed: method, criterion, target, amount" in message


def test_user_yaml_with_a_wrong_type_names_key_value_and_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^train.epochs must be an integer >= 0; got 'three'\.$"):
        load_config(_yaml(tmp_path, {"train": {"epochs": "three"}}))
    with pytest.raises(ConfigError, match=r"prune.amount must be a fraction in \[0, 1\); got 1.5"):
        load_config(_yaml(tmp_path, {"prune": {"amount": 1.5}}))
    with pytest.raises(ConfigError, match=r"prune.finetune.lr must be a number > 0; got -1"):
        load_config(_yaml(tmp_path, {"prune": {"finetune": {"lr": -1}}}))


def test_values_are_strict_but_integers_count_as_numbers() -> None:
    for key, value, pattern in [
        ("progress", 1, r"progress must be true or false; got 1"),
        ("train.epochs", 3.0, r"train.epochs must be an integer >= 0; got 3.0"),
        ("seed", "3", r"seed must be an integer >= 0; got '3'"),
        ("model.name", 3, r"model.name must be a string; got 3"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            load_config(None, {key: value})
    config = load_config(None, {"train.lr": 1, "prune.amount": 0})
    assert config.train.recipe.lr == 1.0 and isinstance(config.train.recipe.lr, float)
    assert config.prune.amount == 0.0


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"seed": -1, "measure.repeats": 0, "prune.methd": "sfp"})
    message = str(exc.value)
    assert message.startswith("3 config errors:")
    assert "seed must be an integer >= 0; got -1" in message
    assert "measure.repeats must be an integer > 0; got 0" in message
    assert "Did you mean 'prune.method'" in message


def test_new_keys_latency_target_and_nifti_data() -> None:
    config = load_config()
    assert config.prune.latency_runtime == "torch" and config.prune.latency_device is None
    config = load_config(
        None,
        {
            "prune.target": "latency",
            "prune.latency_runtime": "onnxruntime",
            "prune.latency_device": "cuda:0",
        },
    )
    assert config.prune.target == "latency" and config.prune.latency_device == "cuda:0"
    with pytest.raises(ConfigError, match=r"prune.latency_runtime must be one of 'torch', 'onnx"):
        load_config(None, {"prune.latency_runtime": "tensorrt"})
    with pytest.raises(ConfigError, match=r"prune.latency_device must be null or 'cpu'.*'tpu'"):
        load_config(None, {"prune.latency_device": "tpu"})
    assert load_config(None, {"data": {"kind": "nifti_folder", "path": "x"}}).data == {
        "kind": "nifti_folder",
        "path": "x",
    }
    with pytest.raises(ConfigError, match=r"data.kind is required: one of 'medmnist'"):
        load_config(None, {"data": {"path": "x"}})


def test_empty_sections_and_nested_errors() -> None:
    assert build_config({"prune": None, "data": None}) == RunConfig()
    with pytest.raises(ConfigError, match=r"prune must be a mapping \(a config section\); got 3"):
        build_config({"prune": 3})
    with pytest.raises(ConfigError, match=r"prune.finetune must be a mapping of training-recipe"):
        build_config({"prune": {"finetune": [1]}})
    with pytest.raises(
        ConfigError, match=r"task.class_weights must be null, 'balanced'.*\[1, 'x'\]"
    ):
        build_config({"task": {"class_weights": [1, "x"]}})
    with pytest.raises(ConfigError, match=r"compare.seeds\[1\] must be an integer >= 0; got -1"):
        load_config(None, parse_set(["compare.seeds=0,-1"]))


def test_partial_recipes_keep_the_section_defaults() -> None:
    config = load_config(None, {"prune.finetune.epochs": 5, "train.lr": 0.01})
    assert config.prune.finetune.epochs == 5 and config.prune.finetune.lr == 5e-4
    assert config.train.recipe.lr == 0.01 and config.train.recipe.epochs == 4
    assert isinstance(config.prune.finetune, TrainRecipe)


def test_recipe_keys_mirror_train_recipe() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(TrainRecipe) if f.name != "extra"}
    assert set(RECIPE_KEYS) == set(fields)
    assert {k: f.default for k, f in RecipeConfig.model_fields.items()} == fields


def test_configs_are_frozen_and_updated_with_validation() -> None:
    config = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        config.seed = 3  # type: ignore[misc]
    updated = update_config(config, {"prune.method": "sfp", "data.n_train": 40, "seed": 2})
    assert (updated.prune.method, updated.data["n_train"], updated.seed) == ("sfp", 40, 2)
    assert config.prune.method == "oneshot" and config.data["n_train"] == 480
    with pytest.raises(ConfigError, match=r"Did you mean 'prune.method'"):
        update_config(config, {"prune.methd": "sfp"})


def test_docs_config_md_is_generated_from_the_models() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert path.read_text() == schema_markdown(), (
        "docs/config.md is stale: run `medprune config --schema > docs/config.md`"
    )
    rows = [line for line in schema_markdown().splitlines() if line.startswith("| `")]
    keys = {line.split("`")[1] for line in rows}
    assert {"prune.amount", "prune.finetune.lr", "train.epochs", "data.kind", "seed"} <= keys
    assert {"prune.latency_runtime", "prune.latency_device"} <= keys
    for line in rows:  # every key: type, default and a description
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), line
