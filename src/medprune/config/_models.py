"""The run config as frozen pydantic models: one class per section, every key with its type,
default, constraints and a description (the source of ``docs/config.md``).

Values are checked strictly (``strict=True``: ``"3"`` is not an integer, ``1`` is not ``true``);
integers are accepted where a number is expected. A field whose allowed values are hard to read
from its type carries an ``allowed`` phrase (``json_schema_extra``) used by the error messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Required, TypedDict

from medprune.tasks.recipe import OptimizerName, SchedulerName, TrainRecipe

DataKind = Literal[
    "medmnist",
    "segmentation_folder",
    "image_folder",
    "csv",
    "nifti_folder",
    "synthetic_classification",
    "synthetic_segmentation",
]
DATA_KINDS: tuple[str, ...] = DataKind.__args__  # type: ignore[attr-defined]
TargetKind = Literal["macs", "params", "ratio", "latency"]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]

DEVICE_PATTERN = r"^(cpu|auto|cuda(:\d+)?)$"
DEVICE_ALLOWED = "'cpu', 'cuda', 'cuda:N' or 'auto'"
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


def _allowed(text: str) -> dict[str, Any]:
    """``json_schema_extra`` of a field: the phrase errors and docs use for its allowed values."""
    return {"allowed": text}


# ----------------------------------------------------------------------------- training recipe
_RECIPE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainRecipe) if f.name != "extra"}


class RecipeConfig(BaseModel):
    """The keys of a :class:`~medprune.tasks.TrainRecipe` as the config reads them (validation
    and documentation only: sections hold a real ``TrainRecipe``). Defaults are TrainRecipe's."""

    model_config = _STRICT

    epochs: int = Field(
        _RECIPE_DEFAULTS["epochs"], ge=0, description="passes over the training set (0 = none)"
    )
    optimizer: OptimizerName = Field(
        _RECIPE_DEFAULTS["optimizer"], description="`sgd` (with `momentum`), `adam` or `adamw`"
    )
    lr: float = Field(_RECIPE_DEFAULTS["lr"], gt=0, description="initial learning rate")
    momentum: float = Field(_RECIPE_DEFAULTS["momentum"], ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(
        _RECIPE_DEFAULTS["weight_decay"], ge=0, description="L2 penalty of the optimizer"
    )
    scheduler: SchedulerName = Field(
        _RECIPE_DEFAULTS["scheduler"],
        description="`none`, `cosine` (to 0 over `epochs`) or `step` (x `gamma` every "
        "`step_size` epochs)",
    )
    step_size: int = Field(
        _RECIPE_DEFAULTS["step_size"], ge=1, description="epochs between decays of `step`"
    )
    gamma: float = Field(_RECIPE_DEFAULTS["gamma"], gt=0, description="decay factor of `step`")
    max_steps_per_epoch: int | None = Field(
        _RECIPE_DEFAULTS["max_steps_per_epoch"],
        ge=1,
        description="cap on batches per epoch (null = the whole loader); for quick runs",
    )
    grad_clip: float | None = Field(
        _RECIPE_DEFAULTS["grad_clip"], gt=0, description="clip the gradient norm (null = off)"
    )


RECIPE_KEYS: tuple[str, ...] = tuple(RecipeConfig.model_fields)


def recipe_to_dict(recipe: TrainRecipe) -> dict[str, Any]:
    """The config keys of ``recipe`` (``extra`` is not a config key)."""
    return {k: getattr(recipe, k) for k in RECIPE_KEYS}


def _to_recipe(value: Any) -> TrainRecipe:
    if isinstance(value, TrainRecipe):
        return value
    if not isinstance(value, Mapping):
        raise PydanticCustomError("allowed", "a mapping of training-recipe keys (epochs, lr, ...)")
    # a ValidationError raised here is reported under this field's location by pydantic
    return TrainRecipe(**RecipeConfig.model_validate(dict(value)).model_dump())


Recipe = Annotated[TrainRecipe, PlainValidator(_to_recipe), PlainSerializer(recipe_to_dict)]


def _recipe_over(base: Any, values: Mapping[str, Any]) -> Any:
    """``values`` over the ``base`` recipe (a TrainRecipe or a mapping): a partial recipe keeps
    the section's own defaults (fine-tuning: 2 epochs at lr 5e-4), not TrainRecipe's."""
    if isinstance(base, TrainRecipe):
        base = recipe_to_dict(base)
    if not isinstance(base, Mapping):
        return base  # reported by _to_recipe
    return {**base, **values}


# ----------------------------------------------------------------------------- sections
class ModelConfig(BaseModel):
    """Which network to build (:func:`medprune.models.create_model`)."""

    model_config = _STRICT

    name: str = Field(
        "auto",
        description="a model name: `monai.<Class>`, a registered name (`list_models()`), "
        "`package.module:factory` or `path/to/file.py:factory`; `auto` = `small_resnet` "
        "(classification) or `unet` (segmentation)",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the model; `in_channels`, `num_classes` / "
        "`out_channels` and `spatial_dims` are filled from the data when absent",
    )


class TaskConfig(BaseModel):
    """The task: its losses and metrics."""

    model_config = _STRICT

    kind: Literal["auto", "classification", "segmentation"] = Field(
        "auto", description="`auto` = the kind of the data"
    )
    loss: str | None = Field(
        None,
        description="classification: `ce`, `weighted_ce`, `focal`; segmentation: `dice_ce`, "
        "`ce`, `dice`; null = the task's default",
    )
    class_weights: Literal["balanced"] | list[float] | None = Field(
        None,
        description="loss weight per class: null (none), `balanced` (inverse training "
        "frequency) or one number per class",
        json_schema_extra=_allowed("null, 'balanced' or a list of floats (one per class)"),
    )
    hd95: bool = Field(
        True,
        description="segmentation: compute the 95% Hausdorff distance at every evaluation "
        "(the slowest metric; `false` skips it)",
    )


class TrainConfig(BaseModel):
    """Base-model training: loader settings, plus the training-recipe keys (``epochs``, ``lr``,
    ...) flattened into this section and held as :attr:`recipe`."""

    model_config = _STRICT
    flattened: ClassVar[str] = "recipe"

    batch_size: int = Field(32, gt=0, description="training batch size")
    eval_batch_size: int = Field(64, gt=0, description="batch size of evaluation")
    balanced_sampling: bool = Field(
        False, description="draw training batches class-balanced (classification)"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    recipe: Recipe = Field(
        default_factory=lambda: TrainRecipe(epochs=4),
        description="the training recipe; its keys are written flat in `train`",
    )

    @model_validator(mode="before")
    @classmethod
    def _gather_recipe(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        values = {k: data.pop(k) for k in list(data) if k in RECIPE_KEYS}
        base = data.get("recipe", {"epochs": 4})
        if values or isinstance(base, Mapping):
            data["recipe"] = _recipe_over(base, values)
        return data


def _default_finetune() -> dict[str, Any]:
    return {"epochs": 2, "lr": 5e-4}


class PruneConfig(BaseModel):
    """One pruning run: method, budget, calibration and fine-tuning."""

    model_config = _STRICT

    method: str = Field(
        "oneshot",
        description="a method (`oneshot`, `iterative`, `sfp`, `fpgm_soft`, `mfp`, `sauron`, "
        "`lottery`; `list_methods()`)",
    )
    criterion: str = Field(
        "l1", description="criterion of `oneshot` / `iterative` (`list_criteria()`)"
    )
    target: TargetKind = Field("macs", description="what `amount` is a fraction of")
    amount: Fraction = Field(0.5, description="the fraction to remove (0.5 = half)")
    latency_runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="target `latency`: the runtime whose latency is cut"
    )
    latency_device: str | None = Field(
        None,
        pattern=DEVICE_PATTERN,
        description="target `latency`: the device it is measured on (null = the run's `device`)",
        json_schema_extra=_allowed(f"null or {DEVICE_ALLOWED}"),
    )
    latency_refresh: bool = Field(
        False,
        description="target `latency`: measure the latency tables again instead of reading the "
        "cache (e.g. after timings taken on a busy machine); the new ones replace the cached",
    )
    calibration_size: int = Field(
        64, gt=0, description="images in the calibration subset of data-driven criteria"
    )
    calibration_balanced: bool = Field(
        True, description="draw the calibration subset class-balanced"
    )
    calibration_batch_size: int = Field(16, gt=0, description="batch size of calibration")
    finetune: Recipe = Field(
        default_factory=lambda: TrainRecipe(**_default_finetune()),
        description="the fine-tuning recipe after pruning (the same for every method)",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra keyword arguments of the method; a key naming a method or criterion "
        'with a mapping value applies to that one only (`{"sfp": {"interval": 2}}`)',
    )
    guard: dict[str, Any] | None = Field(
        None,
        description="keyword arguments of a `RecallGuard` (e.g. `{max_recall_drop: 0.02}`); "
        "null = no guard",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_finetune(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("finetune"), Mapping):
            data = {**data, "finetune": _recipe_over(_default_finetune(), data["finetune"])}
        return data

    @model_validator(mode="after")
    def _latency_needs_a_cut(self) -> PruneConfig:
        if self.target == "latency" and self.amount == 0.0:
            raise ValueError(
                "prune.amount must be in (0, 1) for target: latency (0.5 = halve the measured "
                "latency); got 0.0"
            )
        return self


class MeasureConfig(BaseModel):
    """How models are measured (latency with a fixed thread count and batch size)."""

    model_config = _STRICT

    threads: int = Field(1, gt=0, description="intra-op CPU threads while timing")
    repeats: int = Field(20, gt=0, description="timed runs (the median is reported)")
    warmup: int = Field(5, ge=0, description="untimed runs before timing")
    batch_size: int = Field(1, gt=0, description="batch size of the example input")
    latency: bool = Field(True, description="time PyTorch inference")
    onnx: bool = Field(True, description="also export to ONNX and time ONNX Runtime")


def _as_list(value: Any) -> Any:
    """``"0.3,0.5"`` -> ``[0.3, 0.5]`` and ``0.5`` -> ``[0.5]`` (``--set`` friendliness)."""
    if isinstance(value, str):
        return [yaml.safe_load(v.strip()) for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


class CompareConfig(BaseModel):
    """The grid of ``medprune compare``: methods x targets x seeds."""

    model_config = _STRICT

    methods: list[str] = Field(
        default_factory=lambda: ["l1", "hrank", "beta_rank", "taylor"],
        min_length=1,
        description="methods or criteria (a criterion runs `oneshot` with it)",
    )
    targets: list[Fraction] = Field(
        default_factory=lambda: [0.5],
        min_length=1,
        description="fractions to remove (of `prune.target`)",
    )
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0], min_length=1, description="seeds of every cell"
    )
    retry_failed: bool = Field(False, description="rerun cells that failed before")
    finetune_control: bool = Field(
        True,
        description="add, per seed, the unpruned model fine-tuned with the same recipe "
        "(`finetune_only`), the fair reference",
    )

    @field_validator("methods", "targets", "seeds", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("methods", mode="before")
    @classmethod
    def _names_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, (int, float)) else v for v in value]
        return value


# ----------------------------------------------------------------------------- the whole run
class DataSpec(TypedDict, total=False):
    """The ``data`` mapping: ``kind`` and that kind's own keys (one model per kind in
    :mod:`medprune.config._data`, checked by :func:`~medprune.config._data.check_data`)."""

    __pydantic_config__ = ConfigDict(extra="allow", strict=True)  # type: ignore[misc]

    kind: Required[DataKind]


def _default_data() -> dict[str, Any]:
    return {
        "kind": "synthetic_classification",
        "n_train": 480,
        "n_val": 120,
        "n_test": 200,
        "image_size": 32,
        "seed": 0,
    }


class RunConfig(BaseModel):
    """The whole run configuration (``docs/config.md`` lists every key)."""

    model_config = _STRICT

    seed: int = Field(0, ge=0, description="seed of initialisation, data order and calibration")
    out: str = Field("runs/medprune", description="output folder (flag `--out`)")
    device: str = Field(
        "cpu",
        pattern=DEVICE_PATTERN,
        description="device of training and evaluation (`auto` = cuda when available)",
        json_schema_extra=_allowed(DEVICE_ALLOWED),
    )
    progress: bool = Field(True, description="show progress bars")
    data: DataSpec = Field(
        default_factory=_default_data,  # type: ignore[arg-type]
        description="the dataset: `kind` plus that kind's own keys (`path`, `image_size`, "
        "`n_train`, ...: one table per kind below, checked when the config is read); a `data` "
        "mapping replaces the default one, `--set data.KEY=...` edits it",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="the network")
    task: TaskConfig = Field(default_factory=TaskConfig, description="losses and metrics")
    train: TrainConfig = Field(default_factory=TrainConfig, description="base-model training")
    prune: PruneConfig = Field(default_factory=PruneConfig, description="one pruning run")
    measure: MeasureConfig = Field(default_factory=MeasureConfig, description="measurement")
    compare: CompareConfig = Field(
        default_factory=CompareConfig, description="the grid of `medprune compare`"
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """A YAML section left empty (``prune:`` alone) is null: use the defaults."""
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (v is None and k in SECTIONS_WITH_DATA)}
        return data

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-able data (recipes flattened into their sections)."""
        from medprune.config import config_to_dict

        return config_to_dict(self)


SECTIONS: dict[str, type[BaseModel]] = {
    "model": ModelConfig,
    "task": TaskConfig,
    "train": TrainConfig,
    "prune": PruneConfig,
    "measure": MeasureConfig,
    "compare": CompareConfig,
}
SECTIONS_WITH_DATA = ("data", *SECTIONS)
