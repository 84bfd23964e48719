"""Shared command-line pieces: ``--config``, ``--set KEY=VALUE``, common flags, printing.

Precedence (later wins): built-in defaults < ``--config`` YAML < ``--set`` < dedicated flags.
A flag has the same name in every verb that takes it (``--config``, ``--set``, ``--out``,
``--seed``, ``--device``, ``--model``, ``--model-kwargs``); renamed flags stay as hidden aliases
that warn (:class:`DeprecatedFlag`); parsers refuse abbreviations (``allow_abbrev=False``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from medprune.config import RunConfig, load_config, parse_set
from medprune.errors import ConfigError


class FlagDeprecation(FutureWarning):
    """A renamed command-line flag was used; ``medprune`` prints it as one ``warning:`` line."""


class DeprecatedFlag(argparse.Action):
    """A renamed flag kept as a hidden alias: warns (:class:`FlagDeprecation`, a
    ``FutureWarning``) and stores its value where the new flag does (``extend=True``: appends to
    the new flag's list)."""

    def __init__(
        self, option_strings: list[str], dest: str, *, new: str, extend: bool = False, **kw: Any
    ) -> None:
        kw.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)
        self.new, self.extend = new, extend

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        warnings.warn(
            f"{option_string} is deprecated and will be removed; use {self.new}.",
            FlagDeprecation,
            stacklevel=2,
        )
        if self.extend:
            values = [*(getattr(namespace, self.dest, None) or []), *_as_list(values)]
        setattr(namespace, self.dest, values)


def _as_list(values: Any) -> list[Any]:
    return list(values) if isinstance(values, list) else [values]


def add_config_file_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--config``, ``--set`` and ``-v`` (the verbs that read a config but write no run)."""
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config", type=Path, metavar="YAML", help="run config (YAML); flags override its values"
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (see docs/config.md), e.g. --set train.epochs=3 "
        "--set data.n_train=500",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    return group


def add_config_arguments(parser: argparse.ArgumentParser, *, out_help: str | None = None) -> None:
    """``--config``, ``--set``, ``--out``, ``--seed``, ``--device``, ``--no-progress``, ``-v``."""
    group = add_config_file_arguments(parser)
    group.add_argument("--out", metavar="DIR", help=out_help or "output folder (config key `out`)")
    group.add_argument("--seed", type=int, help="random seed (config key `seed`)")
    group.add_argument("--device", help="cpu, cuda, cuda:N or auto (config key `device`)")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_model_kwargs_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--model-kwargs KEY=VALUE ...`` (or one JSON object); ``--model-arg`` is its old name."""
    parser.add_argument(
        "--model-kwargs",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="keyword arguments of the model (config key `model.kwargs`), values read as YAML: "
        "--model-kwargs spatial_dims=2 channels=[16,32], or one JSON object "
        "'{\"spatial_dims\": 2}'",
    )
    parser.add_argument(
        "--model-arg",
        action=DeprecatedFlag,
        dest="model_kwargs",
        new="--model-kwargs",
        extend=True,
        metavar="KEY=VALUE",
    )


def parse_model_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``["spatial_dims=2", '{"channels": [16, 32]}']`` -> ``{"spatial_dims": 2, ...}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        text = item.strip()
        if text.startswith("{"):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = None
            if isinstance(value, dict):
                out.update({str(k): v for k, v in value.items()})
                continue
        elif "=" in text and text.partition("=")[0].strip():
            out.update(parse_set([text]))
            continue
        raise ConfigError(
            "--model-kwargs must be a JSON object or KEY=VALUE items (e.g. --model-kwargs "
            f"spatial_dims=2 channels=[16,32]); got {item!r}."
        )
    return out


#: ``{argument attribute: config key}`` of :func:`add_latency_arguments`.
LATENCY_FLAGS = {
    "latency_runtime": "prune.latency_runtime",
    "latency_device": "prune.latency_device",
    "latency_refresh": "prune.latency_refresh",
}


def add_latency_arguments(group: argparse._ArgumentGroup) -> None:
    """``--latency-runtime``, ``--latency-device``, ``--latency-refresh`` (a latency target)."""
    group.add_argument(
        "--latency-runtime",
        choices=("torch", "onnxruntime"),
        help="runtime a latency target is measured on (default torch; onnxruntime: CPU only)",
    )
    group.add_argument(
        "--latency-device",
        metavar="DEV",
        help="device a latency target is measured on: cpu, cuda, cuda:N or auto (default: the "
        "run's --device; cpu for onnxruntime)",
    )
    group.add_argument(
        "--latency-refresh",
        action="store_const",
        const=True,
        help="measure the latency tables again instead of reading them from the cache "
        "($MEDPRUNE_CACHE_DIR/latency, else ~/.cache/medprune/latency)",
    )


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: write into a folder that holds another run's finished results."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into --out even when it holds another run's finished model.pt / results "
        "(they are replaced)",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the base-model training that most runs change."""
    group = parser.add_argument_group("base model")
    group.add_argument("--model", metavar="NAME", help="model name (config key `model.name`)")
    add_model_kwargs_argument(group)
    group.add_argument("--epochs", type=int, help="training epochs (config key `train.epochs`)")
    group.add_argument("--lr", type=float, help="learning rate (config key `train.lr`)")
    group.add_argument("--batch-size", type=int, help="batch size (config key `train.batch_size`)")


FLAG_KEYS = {
    "out": "out",
    "seed": "seed",
    "device": "device",
    "model": "model.name",
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
}


def config_from_args(
    args: argparse.Namespace,
    extra: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build the run config of a verb.

    Args:
        args: parsed arguments (with the :func:`add_config_arguments` flags).
        extra: more ``{argument attribute: dotted config key}`` of the verb's own flags.
        defaults: verb defaults applied before the YAML file (e.g. the demo's small settings).
        values: ``{dotted key: value}`` set by the verb's flags, applied last.
    """
    _logging(args)
    overrides: dict[str, Any] = dict(defaults or {})
    if defaults and getattr(args, "config", None):
        overrides = {}  # a user's YAML file replaces the verb defaults
    overrides.update(parse_set(getattr(args, "set", None)))
    for attr, key in {**FLAG_KEYS, **(extra or {})}.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    for key, value in parse_model_kwargs(getattr(args, "model_kwargs", None)).items():
        overrides[f"model.kwargs.{key}"] = value
    if getattr(args, "no_progress", False):
        overrides["progress"] = False
    overrides.update(values or {})
    config = load_config(getattr(args, "config", None), overrides)
    return config


def _logging(args: argparse.Namespace) -> None:
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def parse_floats(text: str, what: str) -> list[float]:
    """``"0.3,0.5"`` -> ``[0.3, 0.5]`` (ConfigError naming ``what`` otherwise)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated numbers like 0.3,0.5; got {text!r}."
        ) from None


def parse_ints(text: str, what: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated integers like 0,1,2; got {text!r}."
        ) from None


def parse_shape(text: str) -> list[int]:
    """``"1,3,224,224"`` -> ``[1, 3, 224, 224]`` (batch, channels, spatial...)."""
    try:
        shape = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        shape = []
    if len(shape) < 3 or any(s < 1 for s in shape):
        raise ConfigError(
            f"--input-shape must be B,C,H,W or B,C,D,H,W of positive integers; got {text!r}."
        )
    return shape


def command_line(verb: str, args: argparse.Namespace | None = None) -> str:
    """The command that reproduces this run: ``sys.argv`` when the ``medprune`` executable ran
    it, otherwise (``main([...])`` from Python) an equivalent one rebuilt from ``args``."""
    import shlex

    argv = sys.argv[1:]
    if not (argv and argv[0] == verb) and args is not None:
        argv = [verb]
        for key, value in sorted(vars(args).items()):
            flag = "--" + key.replace("_", "-")
            if key in ("verb",) or value is None or value is False or value == []:
                continue
            if value is True:
                argv.append(flag)
            elif isinstance(value, list) and key == "set":
                for item in value:
                    argv += [flag, str(item)]
            elif isinstance(value, list) and key == "model_kwargs":
                argv += [flag, *(str(item) for item in value)]
            elif isinstance(value, list):
                argv += [flag, ",".join(str(v) for v in value)]
            else:
                argv += [flag, str(value)]
    if argv and argv[0] == verb:
        argv = argv[1:]
    return " ".join(["medprune", verb, *(shlex.quote(a) for a in argv)])


def echo(text: str = "") -> None:
    """Print to stdout (CLI output only; library code logs). Under ``torchrun`` only rank 0
    prints, so results and notes appear once (errors still come from every rank)."""
    from medprune.tasks.distributed import is_main_process

    if is_main_process():
        print(text, flush=True)


def add_model_source_arguments(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """A saved ``model.pt`` or ``--model NAME``, the input shape and model keyword arguments.

    ``many``: accept several ``model.pt`` files (``args.checkpoint`` is then a list).
    """
    parser.add_argument(
        "checkpoint",
        nargs="*" if many else "?",
        type=Path,
        help="model.pt files (train / prune output)" if many else "model.pt (train / prune output)",
    )
    parser.add_argument("--model", metavar="NAME", help="build this registered model instead")
    add_model_kwargs_argument(parser)
    parser.add_argument(
        "--input-shape",
        metavar="B,C,H,W",
        help="example input shape (default: the one stored in model.pt)",
    )


def model_from_args(args: argparse.Namespace) -> tuple[Any, list[int]]:
    """``(model, input shape)`` from :func:`add_model_source_arguments` flags."""
    from medprune.pipeline import load_model

    shape = parse_shape(args.input_shape) if args.input_shape else None
    kwargs = parse_model_kwargs(args.model_kwargs)
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise ConfigError(f"model file {str(args.checkpoint)!r} does not exist.")
        model, info = load_model(
            args.checkpoint, model_name=args.model, model_kwargs=kwargs or None, input_shape=shape
        )
        shape = shape or info.get("input_shape")
        if shape is None:
            raise ConfigError(
                f"{args.checkpoint} stores no input shape; pass --input-shape B,C,H,W."
            )
        return model, list(shape)
    if args.model is None:
        raise ConfigError("give a model file (model.pt) or --model NAME with --input-shape.")
    if shape is None:
        raise ConfigError(f"--model {args.model} needs --input-shape, e.g. 1,3,224,224.")
    return model_for_input(args.model, kwargs, shape), shape


#: Number of outputs given to a model that needs one when none is given (measure, inspect,
#: export: the count changes the last layer only).
DEFAULT_OUTPUTS = 2


def model_for_input(name: str, kwargs: Mapping[str, Any], shape: list[int]) -> Any:
    """Build model ``name`` for example inputs of ``shape`` ``(B, C, *S)``.

    What the shape tells is filled in unless ``kwargs`` give it: ``in_channels`` = ``C``,
    ``spatial_dims`` = ``len(S)`` (MONAI networks, and any model for a 3D shape) and the hint
    ``image_size`` = ``S`` (MONAI: derives ``Classifier``'s ``in_shape``, the U-Net depth). A
    required output count (``out_channels``, ``classes``...) left out becomes
    :data:`DEFAULT_OUTPUTS`, with a note on stderr naming the flag that sets it. Used by every
    verb that builds a model from ``--model`` and ``--input-shape`` (measure, export, inspect).
    """
    from medprune.models import create_model
    from medprune.models.registry import MONAI_PREFIX, missing_output_key, model_accepts

    kwargs = dict(kwargs)
    monai = name.startswith(MONAI_PREFIX)
    if model_accepts(name, "in_channels"):
        kwargs.setdefault("in_channels", shape[1])
    if (monai or len(shape) == 5) and model_accepts(name, "spatial_dims"):
        kwargs.setdefault("spatial_dims", len(shape) - 2)
    if monai:
        kwargs.setdefault("image_size", shape[2:])
    key = missing_output_key(name, kwargs)
    if key is not None:
        value: Any = (DEFAULT_OUTPUTS,) if key == "out_shape" else DEFAULT_OUTPUTS
        kwargs[key] = value
        shown = ",".join(map(str, value)) if key == "out_shape" else value
        note(
            f"model {name!r} needs {key} (its number of outputs); using {key}={shown}. "
            f"Set it with --model-kwargs {key}={'[N]' if key == 'out_shape' else 'N'}."
        )
    return create_model(name, **kwargs)


def note(text: str) -> None:
    """Print ``note: text`` to stderr (what the command assumed; stdout stays the results;
    rank 0 only under ``torchrun``)."""
    from medprune.tasks.distributed import is_main_process

    if is_main_process():
        print(f"note: {text}", file=sys.stderr, flush=True)
