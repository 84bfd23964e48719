"""The run configuration: YAML file + command-line overrides -> validated frozen dataclasses.

A config has the sections ``seed``, ``out``, ``device``, ``progress``, ``data`` (passed to
:func:`medprune.data.build_splits`), ``model``, ``task``, ``train``, ``prune``, ``measure`` and
``compare``. Every key has a default, so an empty config trains a small CNN on synthetic data::

    cfg = load_config("run.yaml", {"train.epochs": 3, "prune.criterion": "beta_rank"})
    save_resolved(cfg, "runs/x/config.resolved.yaml")

Overrides are dotted keys applied in order after the YAML file (so flags beat the file). Errors
name the key, the value received and what is allowed; an unknown key gets a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medprune.config._checks import check_value, unknown_key
from medprune.errors import ConfigError
from medprune.tasks.recipe import TrainRecipe
from medprune.typing import PathLike

DATA_KINDS = (
    "medmnist",
    "segmentation_folder",
    "image_folder",
    "csv",
    "synthetic_classification",
    "synthetic_segmentation",
)
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(TrainRecipe) if f.name != "extra")


def _default_data() -> dict[str, Any]:
    return {
        "kind": "synthetic_classification",
        "n_train": 480,
        "n_val": 120,
        "n_test": 200,
        "image_size": 32,
        "seed": 0,
    }


def _default_finetune() -> dict[str, Any]:
    return {"epochs": 2, "lr": 5e-4}


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build: a :func:`medprune.models.create_model` name and its keyword
    arguments (``in_channels`` / ``num_classes`` / ``out_channels`` / ``spatial_dims`` are filled
    from the data when absent)."""

    name: str = "auto"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskConfig:
    """The task: ``kind`` (``auto`` = from the data), ``loss`` (None = the task's default),
    ``class_weights`` (None, ``"balanced"`` = inverse training frequency, or one float per class)
    and, for segmentation, ``hd95`` (compute the 95% Hausdorff distance at every evaluation; a
    distance transform per image and class, the slowest metric: ``false`` skips it)."""

    kind: Literal["auto", "classification", "segmentation"] = "auto"
    loss: str | None = None
    class_weights: str | list[float] | None = None
    hd95: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Base-model training: a :class:`TrainRecipe` plus loader settings."""

    batch_size: int = 32
    eval_batch_size: int = 64
    balanced_sampling: bool = False
    num_workers: int = 0
    recipe: TrainRecipe = field(default_factory=lambda: TrainRecipe(epochs=4))


@dataclass(frozen=True)
class PruneConfig:
    """One pruning run.

    Attributes:
        method: a name from :func:`medprune.methods.list_methods` (``oneshot``, ``sfp``, ...).
        criterion: criterion for ``oneshot`` / ``iterative`` (a :func:`list_criteria` name).
        target: what the amount is a fraction of: ``macs``, ``params``, ``ratio`` or
            ``latency`` (measured, see :mod:`medprune.latency`).
        amount: the fraction to remove, in [0, 1) (latency: in (0, 1)).
        latency_runtime: runtime a latency target is measured on: ``torch`` or ``onnxruntime``.
        latency_device: device a latency target is measured on; None = the run's device.
        calibration_size: images in the calibration subset of data-driven criteria.
        calibration_balanced: draw the calibration subset class-balanced.
        calibration_batch_size: batch size of the calibration loader.
        finetune: the fine-tuning :class:`TrainRecipe` (identical for every method).
        options: extra keyword arguments for the method; a key naming a method or criterion
            with a mapping value applies to that one only (``{"sfp": {"interval": 2}}``).
        guard: keyword arguments of a :class:`RecallGuard`; None = no guard.
    """

    method: str = "oneshot"
    criterion: str = "l1"
    target: Literal["macs", "params", "ratio", "latency"] = "macs"
    amount: float = 0.5
    latency_runtime: Literal["torch", "onnxruntime"] = "torch"
    latency_device: str | None = None
    calibration_size: int = 64
    calibration_balanced: bool = True
    calibration_batch_size: int = 16
    finetune: TrainRecipe = field(default_factory=lambda: TrainRecipe(**_default_finetune()))
    options: dict[str, Any] = field(default_factory=dict)
    guard: dict[str, Any] | None = None


@dataclass(frozen=True)
class MeasureConfig:
    """How models are measured (CPU latency with a fixed thread count and batch size)."""

    threads: int = 1
    repeats: int = 20
    warmup: int = 5
    batch_size: int = 1
    latency: bool = True
    onnx: bool = True


@dataclass(frozen=True)
class CompareConfig:
    """The grid of ``medprune compare``: methods x targets x seeds (names of criteria run the
    ``oneshot`` method with that criterion). ``finetune_control`` adds, per seed, the unpruned
    model fine-tuned with the same recipe (``finetune_only``), the fair reference."""

    methods: list[str] = field(default_factory=lambda: ["l1", "hrank", "beta_rank", "taylor"])
    targets: list[float] = field(default_factory=lambda: [0.5])
    seeds: list[int] = field(default_factory=lambda: [0])
    retry_failed: bool = False
    finetune_control: bool = True


@dataclass(frozen=True)
class RunConfig:
    """The whole run configuration (see the module docstring)."""

    seed: int = 0
    out: str = "runs/medprune"
    device: str = "cpu"
    progress: bool = True
    data: dict[str, Any] = field(default_factory=_default_data)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-able data (recipes flattened into their sections)."""
        return config_to_dict(self)


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "task": TaskConfig,
    "train": TrainConfig,
    "prune": PruneConfig,
    "measure": MeasureConfig,
    "compare": CompareConfig,
}
# sections whose TrainRecipe is flattened into the section (train) or nested under a key (prune)
_RECIPE_FIELD = {"train": "recipe", "prune": "finetune"}


# ----------------------------------------------------------------------------- building
def _build_recipe(prefix: str, values: Mapping[str, Any], base: TrainRecipe) -> TrainRecipe:
    hints = typing.get_type_hints(TrainRecipe)
    kwargs = {}
    for k, v in values.items():
        if k not in RECIPE_KEYS:
            raise unknown_key(f"{prefix}.{k}", list(RECIPE_KEYS))
        kwargs[k] = check_value(f"{prefix}.{k}", v, hints[k])
    try:
        return dataclasses.replace(base, **kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}: {e}") from None


def _build_section(name: str, values: Any) -> Any:
    cls = SECTIONS[name]
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {name!r} must be a mapping; got {values!r}.")
    hints = typing.get_type_hints(cls)
    recipe_field = _RECIPE_FIELD.get(name)
    default = cls()
    own = [f.name for f in dataclasses.fields(cls) if f.name != "recipe"]
    allowed = own + (list(RECIPE_KEYS) if name == "train" else [])
    kwargs: dict[str, Any] = {}
    recipe_values: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{name}.{k}"
        if name == "train" and k in RECIPE_KEYS:
            recipe_values[k] = v
        elif k == recipe_field:
            if not isinstance(v, Mapping):
                raise ConfigError(f"{key} must be a mapping of TrainRecipe fields; got {v!r}.")
            recipe_values.update(v)
        elif k in own:
            kwargs[k] = check_value(key, v, hints[k])
        else:
            raise unknown_key(key, allowed)
    if recipe_field is not None:
        prefix = name if name == "train" else f"{name}.{recipe_field}"
        kwargs[recipe_field] = _build_recipe(prefix, recipe_values, getattr(default, recipe_field))
    obj = dataclasses.replace(default, **kwargs)
    _validate_section(name, obj)
    return obj


def _positive(key: str, value: int | float, *, zero: bool = False) -> None:
    if value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(f"{key} must be {bound}; got {value!r}.")


def _validate_section(name: str, obj: Any) -> None:
    if name == "train":
        _positive("train.batch_size", obj.batch_size)
        _positive("train.eval_batch_size", obj.eval_batch_size)
        _positive("train.num_workers", obj.num_workers, zero=True)
    elif name == "prune":
        if not 0.0 <= obj.amount < 1.0:
            raise ConfigError(
                f"prune.amount must be a fraction in [0, 1) (0.5 = remove half); got {obj.amount!r}."
            )
        if obj.target == "latency" and obj.amount == 0.0:
            raise ConfigError("prune.amount must be in (0, 1) for target: latency; got 0.0.")
        _positive("prune.calibration_size", obj.calibration_size)
        _positive("prune.calibration_batch_size", obj.calibration_batch_size)
    elif name == "measure":
        _positive("measure.threads", obj.threads)
        _positive("measure.repeats", obj.repeats)
        _positive("measure.warmup", obj.warmup, zero=True)
        _positive("measure.batch_size", obj.batch_size)
    elif name == "compare":
        for t in obj.targets:
            if not 0.0 <= t < 1.0:
                raise ConfigError(f"compare.targets must be fractions in [0, 1); got {t!r}.")
        if not obj.methods:
            raise ConfigError("compare.methods must name at least one method or criterion.")
        if not obj.seeds:
            raise ConfigError("compare.seeds must hold at least one seed; got [].")
    elif name == "task" and isinstance(obj.class_weights, str):
        if obj.class_weights != "balanced":
            raise ConfigError(
                "task.class_weights must be null, 'balanced' or a list of floats; "
                f"got {obj.class_weights!r}."
            )


TOP_LEVEL = ("seed", "out", "device", "progress", "data", *SECTIONS)


def build_config(raw: Mapping[str, Any] | None) -> RunConfig:
    """Validate a plain mapping (as read from YAML) into a :class:`RunConfig`.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    raw = dict(raw or {})
    for key in raw:
        if key not in TOP_LEVEL:
            raise unknown_key(str(key), list(TOP_LEVEL))
    kwargs: dict[str, Any] = {name: _build_section(name, raw.get(name)) for name in SECTIONS}
    hints = typing.get_type_hints(RunConfig)
    for key in ("seed", "out", "device", "progress"):
        if key in raw:
            kwargs[key] = check_value(key, raw[key], hints[key])
    if kwargs.get("seed", 0) < 0:
        raise ConfigError(f"seed must be an integer >= 0; got {kwargs['seed']!r}.")
    device = kwargs.get("device", "cpu")
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}.")
    data = raw.get("data")
    if data is not None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"data must be a mapping with a 'kind' key; got {data!r}.")
        data = dict(data)
        kind = data.get("kind")
        if kind not in DATA_KINDS:
            close = difflib.get_close_matches(str(kind), DATA_KINDS, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"data.kind must be one of {', '.join(DATA_KINDS)}; got {kind!r}.{hint}"
            )
        kwargs["data"] = data
    return RunConfig(**kwargs)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override key must be dotted names like 'train.epochs'; got {key!r}.")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set {key!r}: {'.'.join(parts[: i + 1])!r} is {child!r}, not a section."
            )
        node = child
    node[parts[-1]] = value


def read_yaml(path: PathLike) -> dict[str, Any]:
    """Read a YAML mapping; ConfigError when the file is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping; got {type(raw).__name__}."
        )
    return raw


def load_config(
    path: PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """Load a run config: defaults, then the YAML file, then ``overrides`` in order.

    Args:
        path: a YAML file (None = defaults only).
        overrides: dotted keys -> values, e.g. ``{"train.epochs": 3, "data.n": 200}``; string
            values of ``--set key=value`` are parsed as YAML scalars by :func:`parse_set`.

    Returns:
        The validated :class:`RunConfig`.
    """
    raw = read_yaml(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        if key.startswith("data.") and raw.get("data") is None:
            raw["data"] = _default_data()  # `--set data.n_train=...` edits the default data
        _set_dotted(raw, key, value)
    return build_config(raw)


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=3", "data.kind=medmnist"]`` -> ``{"train.epochs": 3, ...}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. train.epochs=3); got {item!r}.")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = text
    return out


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain data of ``config``, the same layout that :func:`build_config` reads."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            section = {
                k.name: getattr(value, k.name)
                for k in dataclasses.fields(value)
                if k.name != _RECIPE_FIELD.get(f.name)
            }
            recipe = getattr(value, _RECIPE_FIELD.get(f.name, ""), None)
            if recipe is not None:
                flat = {k: getattr(recipe, k) for k in RECIPE_KEYS}
                if f.name == "train":
                    section.update(flat)
                else:
                    section[_RECIPE_FIELD[f.name]] = flat
            value = section
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_resolved(config: RunConfig, path: PathLike) -> Path:
    """Write ``config`` as YAML (atomically) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    os.replace(tmp, path)
    return path


__all__ = [
    "CompareConfig",
    "MeasureConfig",
    "ModelConfig",
    "PruneConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "build_config",
    "config_to_dict",
    "load_config",
    "parse_set",
    "save_resolved",
]
