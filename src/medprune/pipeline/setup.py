"""Run setup: data splits, seeded loaders, calibration subset, task and model from a config, and
the train / evaluate / measure steps every verb shares."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from medprune.config import RunConfig, update_config
from medprune.errors import ConfigError
from medprune.measure._inputs import check_device
from medprune.models.registry import model_accepts
from medprune.typing import PathLike

DEFAULT_MODELS = {"classification": "small_resnet", "segmentation": "unet"}


@dataclass
class RunSetup:
    """Everything built from a config before any model exists.

    Attributes:
        config: the validated config.
        splits: :class:`medprune.data.DataSplits` (train / val / test datasets and their facts).
        task: the task object (loss, metrics); ``task_kind`` is its kind.
        train_loader, val_loader, test_loader: seeded loaders of ``(inputs, targets)``.
        calibration: the class-balanced calibration loader of data-driven criteria.
        example_inputs: ``(measure.batch_size, C, *S)``: the first test image, repeated.
        model_name, model_kwargs: what :func:`medprune.models.create_model` is called with.
        device: torch device of training and evaluation.
    """

    config: RunConfig
    splits: Any
    task: Any
    task_kind: str
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    calibration: Any
    example_inputs: torch.Tensor
    model_name: str
    model_kwargs: dict[str, Any]
    device: torch.device

    @property
    def class_names(self) -> list[str]:
        names = getattr(self.splits, "class_names", None)
        return [str(n) for n in names] if names else [str(i) for i in range(self.num_classes)]

    @property
    def num_classes(self) -> int:
        return int(self.splits.num_classes)

    def for_seed(self, seed: int) -> RunSetup:
        """The same setup with the training order and calibration subset drawn with ``seed``
        (identical for every method of that seed; ``config.seed`` gives ``self``)."""
        if seed == self.config.seed:
            return self
        config = update_config(self.config, {"seed": seed})
        train_loader, _, _, calibration = _loaders(config, self.splits, self.task_kind)
        return dataclasses.replace(self, train_loader=train_loader, calibration=calibration)


def _labels(dataset: Any) -> torch.Tensor | None:
    from medprune.data import labels_of

    return labels_of(dataset)


def _class_weights(config: RunConfig, splits: Any, kind: str) -> list[float] | None:
    weights = config.task.class_weights
    if weights is None or isinstance(weights, list):
        if weights is not None and len(weights) != splits.num_classes:
            raise ConfigError(
                f"task.class_weights has {len(weights)} entries; the data has "
                f"{splits.num_classes} classes."
            )
        return weights
    labels = _labels(splits.train)
    if kind != "classification" or labels is None:
        raise ConfigError(
            "task.class_weights='balanced' needs a classification dataset with labels."
        )
    counts = torch.bincount(labels.long().flatten(), minlength=splits.num_classes).float()
    return (counts.sum() / (len(counts) * counts.clamp(min=1))).tolist()


def _model_kwargs(config: RunConfig, splits: Any, kind: str) -> dict[str, Any]:
    """``model.kwargs`` plus what the data decides: ``in_channels``, the number of outputs
    (``out_channels`` for segmentation, else ``num_classes`` unless ``out_channels`` is given)
    and ``spatial_dims`` (MONAI nets and 3D data); MONAI nets also get the hint ``image_size``.
    What the user gave wins; :func:`medprune.models.create_model` maps these common names onto
    each MONAI network's own (``resnet18``'s ``n_input_channels``, ``DenseNet121``'s
    ``out_channels``)."""
    kwargs = dict(config.model.kwargs)
    name = config.model.name
    dims = int(getattr(splits, "spatial_dims", 2))
    kwargs.setdefault("in_channels", int(splits.in_channels))
    if kind == "segmentation" or "out_channels" in kwargs:
        kwargs.setdefault("out_channels", int(splits.num_classes))
    else:
        kwargs.setdefault("num_classes", int(splits.num_classes))
    if (name.startswith("monai.") or dims != 2 or kind == "segmentation") and model_accepts(
        name, "spatial_dims"
    ):  # unet3d is 3D by construction and takes no spatial_dims
        kwargs.setdefault("spatial_dims", dims)
    size = getattr(splits, "image_size", None)
    if name.startswith("monai.") and size is not None:
        kwargs.setdefault("image_size", [int(s) for s in size])
    return kwargs


def _loaders(config: RunConfig, splits: Any, kind: str) -> tuple[Any, Any, Any, Any]:
    """Seeded train / val / test loaders and the (class-balanced) calibration loader."""
    from medprune.data import calibration_loader
    from medprune.tasks import make_loader

    tc = config.train
    sampler = None
    if tc.balanced_sampling and _labels(splits.train) is not None:
        from medprune.data import ClassBalancedSampler

        sampler = ClassBalancedSampler(_labels(splits.train), seed=config.seed)
    train_loader = make_loader(
        splits.train,
        tc.batch_size,
        shuffle=True,
        seed=config.seed,
        sampler=sampler,
        num_workers=tc.num_workers,
    )
    val_loader = make_loader(
        splits.val, tc.eval_batch_size, shuffle=False, num_workers=tc.num_workers
    )
    test_loader = make_loader(
        splits.test, tc.eval_batch_size, shuffle=False, num_workers=tc.num_workers
    )
    pc = config.prune
    calibration = calibration_loader(
        splits.train,
        min(pc.calibration_size, len(splits.train)),
        batch_size=pc.calibration_batch_size,
        balanced=pc.calibration_balanced and kind == "classification",
        seed=config.seed,
    )
    return train_loader, val_loader, test_loader, calibration


def task_kind(config: RunConfig, data_task: str) -> str:
    """The run's task: ``task.kind``, or the data's (``data_task``) when ``auto``.

    Raises:
        ConfigError: ``task.kind`` is not the task of the data.
    """
    kind = data_task if config.task.kind == "auto" else config.task.kind
    if kind != data_task:
        raise ConfigError(
            f"task.kind is {kind!r} but the data ({config.data['kind']}) is {data_task!r}."
        )
    return kind


def setup_run(config: RunConfig) -> RunSetup:
    """Build data splits, seeded loaders, the calibration subset and the task from ``config``."""
    from medprune.data import build_splits
    from medprune.tasks import create_task

    splits = build_splits(dict(config.data))
    kind = task_kind(config, str(splits.task))
    task_kwargs: dict[str, Any] = {}
    if config.task.loss is not None:
        task_kwargs["loss"] = config.task.loss
    weights = _class_weights(config, splits, kind)
    if weights is not None:
        task_kwargs["class_weights"] = weights
    if kind == "segmentation":
        task_kwargs["hd95"] = bool(config.task.hd95)
        task_kwargs["spatial_dims"] = int(getattr(splits, "spatial_dims", 2))
    task = create_task(kind, num_classes=int(splits.num_classes), **task_kwargs)
    train_loader, val_loader, test_loader, calibration = _loaders(config, splits, kind)
    x0 = splits.test[0][0]
    example = x0.unsqueeze(0).repeat(config.measure.batch_size, *([1] * x0.dim()))
    name = DEFAULT_MODELS[kind] if config.model.name == "auto" else config.model.name
    cfg = config if name == config.model.name else _with_model_name(config, name)
    return RunSetup(
        config=config,
        splits=splits,
        task=task,
        task_kind=kind,
        train_loader=train_loader,
        val_loader=val_loader,
        test_loader=test_loader,
        calibration=calibration,
        example_inputs=example,
        model_name=name,
        model_kwargs=_model_kwargs(cfg, splits, kind),
        device=check_device(config.device),
    )


def _with_model_name(config: RunConfig, name: str) -> RunConfig:
    return update_config(config, {"model.name": name})


def build_model(setup: RunSetup) -> nn.Module:
    """A freshly initialised model (seeded with ``config.seed``), checked to run on the data's
    input size (an image too small for its downsampling fails here, with the size that runs)."""
    from medprune.measure.input_size import check_input_size
    from medprune.models import create_model

    torch.manual_seed(setup.config.seed)
    model = create_model(setup.model_name, **setup.model_kwargs)
    # the new model is on the CPU; the fix of a too-small input is the config key that sets it
    check_input_size(model, setup.example_inputs.cpu(), setting="data.image_size")
    return model


def train_model(
    setup: RunSetup,
    model: nn.Module,
    recipe: Any = None,
    *,
    checkpoint_path: PathLike | None = None,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place with ``recipe`` (default: ``config.train``); returns the history."""
    from medprune.tasks import train

    result = train(
        model,
        setup.task,
        setup.train_loader,
        recipe or setup.config.train.recipe,
        val_loader=setup.val_loader,
        checkpoint_path=checkpoint_path,
        resume=checkpoint_path is not None and Path(checkpoint_path).is_file(),
        seed=setup.config.seed if seed is None else seed,
        device=setup.device,
        progress=setup.config.progress,
    )
    return list(getattr(result, "history", []) or [])


def evaluate_model(setup: RunSetup, model: nn.Module, split: str = "test") -> dict[str, Any]:
    """Task metrics of ``model`` on the ``"test"`` or ``"val"`` split."""
    from medprune.tasks import evaluate

    loader = {"test": setup.test_loader, "val": setup.val_loader}.get(split)
    if loader is None:
        raise ConfigError(f"split must be 'test' or 'val'; got {split!r}.")
    return dict(evaluate(model, setup.task, loader, device=setup.device))


def measure_model(setup: RunSetup, model: nn.Module, *, latency: bool = True) -> dict[str, Any]:
    """Cost of ``model`` (CPU; adds ``gpu_latency_ms`` when CUDA is present).

    ``latency=False`` skips every timing (``measure.latency`` / ``measure.onnx`` are then
    ignored): for models whose latency is measured interleaved with others afterwards
    (:mod:`medprune.pipeline.latency`).
    """
    from medprune.measure import measure

    mc = setup.config.measure
    model = copy.deepcopy(model).cpu().eval()
    latency = latency and mc.latency
    out = measure(
        model,
        setup.example_inputs.cpu(),
        latency=latency,
        onnx=mc.onnx and latency,
        threads=mc.threads,
        repeats=mc.repeats,
        warmup=mc.warmup,
    ).to_dict()
    if latency and torch.cuda.is_available():
        gpu = measure(model, setup.example_inputs, latency=True, device="cuda", memory=False)
        out["gpu_latency_ms"] = gpu.latency_ms
    return out


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution / linear layer: ``{module name: channels}``."""
    out: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            out[name] = int(module.out_channels)
        elif isinstance(module, nn.Linear):
            out[name] = int(module.out_features)
    return out
