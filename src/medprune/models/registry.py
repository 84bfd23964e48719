"""Build models by name: built-in nets, MONAI networks and user factories.

Three kinds of name are understood by :func:`create_model`:

* a registered name (``"resnet56"``, ``"tiny_unet"``; see :func:`list_models`);
* ``"monai.<Name>"``: any class or factory function of ``monai.networks.nets``
  (``"monai.UNet"``, ``"monai.resnet18"``), with the common keyword arguments mapped onto the
  network's own (table below); its other keyword arguments pass through unchanged;
* a user factory ``"package.module:factory"`` or ``"path/to/file.py:factory"``: a callable that
  takes the keyword arguments and returns an ``nn.Module``.

Common keyword arguments of MONAI networks (:mod:`medprune.models.monai_kwargs`). The pipeline
fills ``in_channels``, ``num_classes`` (classification) or ``out_channels`` (segmentation),
``spatial_dims`` and the hint ``image_size`` from the data; a network's own spelling given in
``model.kwargs`` always wins, and a key the network does not take raises :class:`ConfigError`
naming the network, the key and the accepted keys.

Per network (``common key -> its argument``; *defaults* = derived when absent):

* ``resnet10/18/34/50`` (``**kwargs`` -> ``ResNet``): ``in_channels -> n_input_channels``,
  ``num_classes``.
* ``DenseNet121`` / ``DenseNet169``: ``num_classes -> out_channels``.
* ``SEResNet50`` / ``SEResNeXt50`` (``**kwargs`` -> ``SENet``): ``in_channels``, ``num_classes``.
* ``EfficientNetBN``: ``in_channels``, ``num_classes``; *defaults* ``model_name="efficientnet-b0"``,
  ``pretrained=False`` (MONAI's default downloads weights).
* ``Classifier``: ``in_channels`` + ``image_size -> in_shape=(C, *S)``, ``num_classes -> classes``,
  ``spatial_dims`` checked against ``in_shape``; *defaults* ``channels=(16, 32, ...)``, one
  ``stride`` 2 per level, one level per even halving of ``image_size`` (at most 4).
* ``Regressor``: as ``Classifier``, with ``num_classes -> out_shape=(num_classes,)``.
* ``UNet`` / ``AttentionUnet``: ``in_channels``, ``out_channels``, ``spatial_dims``; *defaults*
  ``channels=(16, 32, ...)`` and ``strides`` 2, one level per even halving of ``image_size``
  (at most 4; 4 without ``image_size``).
* ``DynUNet``: ``in_channels``, ``out_channels``, ``spatial_dims``; *defaults* ``kernel_size`` 3
  per level, ``strides=(1, 2, 2, ...)``, ``upsample_kernel_size=strides[1:]``, the number of
  levels that of ``filters`` / ``strides`` / ``kernel_size`` when given, else from
  ``image_size`` (at most 5).
* ``FlexibleUNet``: ``in_channels``, ``out_channels``, ``spatial_dims``; *default*
  ``backbone="efficientnet-b0"``.
* ``VNet``: ``in_channels``, ``out_channels``, ``spatial_dims``; *default*
  ``dropout_dim=spatial_dims`` (MONAI's 3 drops whole 2D samples).
* ``BasicUNet``, ``BasicUNetPlusPlus``, ``SegResNet``, ``HighResNet``: ``in_channels``,
  ``out_channels``, ``spatial_dims`` as they are.

Any network: ``num_classes`` and ``out_channels`` stand for each other (the one the network
takes is used), ``in_channels`` becomes ``n_input_channels`` where that is the spelling,
``image_size`` is dropped unless used, and ``spatial_dims`` is dropped for a network without it.

Example::

    model = create_model("monai.UNet", spatial_dims=2, in_channels=1, out_channels=2,
                         channels=(8, 16, 32), strides=(2, 2))
    model = create_model("monai.resnet18", spatial_dims=2, in_channels=1, num_classes=2)
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from medprune.errors import ConfigError
from medprune.models.monai_kwargs import (
    COMMON_KEYS,
    accepted_keys,
    check_keys,
    monai_kwargs,
    parameter_names,
)
from medprune.registry import Registry

__all__ = [
    "MONAI_MODELS",
    "OUTPUT_KEYS",
    "check_model_kwargs",
    "create_model",
    "list_models",
    "missing_output_key",
    "register_model",
]

F = TypeVar("F", bound=Callable[..., nn.Module])

_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

MONAI_PREFIX = "monai."

#: The MONAI networks listed by ``list_models("monai.*")``: the common convolutional ones.
#: Any other name of ``monai.networks.nets`` works with :func:`create_model` too.
MONAI_MODELS: tuple[str, ...] = (
    "AttentionUnet",
    "BasicUNet",
    "BasicUNetPlusPlus",
    "Classifier",
    "DenseNet121",
    "DenseNet169",
    "DynUNet",
    "EfficientNetBN",
    "FlexibleUNet",
    "HighResNet",
    "Regressor",
    "SEResNet50",
    "SEResNeXt50",
    "SegResNet",
    "UNet",
    "VNet",
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
)


def register_model(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Decorator registering a model class or factory under ``name`` (lowercase snake case).

    Raises :class:`ConfigError` when ``name`` is taken, unless ``override=True``.
    """
    if not isinstance(name, str) or not name or ":" in name or name.startswith(MONAI_PREFIX):
        raise ConfigError(
            f"model name must be a non-empty string without ':' and not starting with "
            f"{MONAI_PREFIX!r} (those are resolved dynamically); got {name!r}."
        )

    def decorator(fn: F) -> F:
        _MODELS.add(name, fn, override=override)
        return fn

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Sorted model names matching the shell-style ``pattern``.

    Registered names plus ``monai.<Name>`` for the curated :data:`MONAI_MODELS`
    (``list_models("tiny_*")``, ``list_models("monai.*")``).
    """
    names = set(_MODELS.list(pattern))
    names.update(n for n in (MONAI_PREFIX + m for m in MONAI_MODELS) if fnmatch.fnmatch(n, pattern))
    return sorted(names)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model called ``name`` with keyword arguments ``kwargs``.

    Args:
        name: a registered name, ``"monai.<Name>"``, ``"package.module:factory"`` or
            ``"path/to/file.py:factory"``.
        **kwargs: passed to the constructor or factory; the built-in models take
            ``in_channels``, ``num_classes`` (classifiers) or ``out_channels`` (segmenters) and
            ``spatial_dims`` where 2D and 3D both make sense.

    Returns:
        The ``nn.Module``. Classifiers map ``(B, C, *S)`` to logits ``(B, num_classes)``,
        segmenters to ``(B, out_channels, *S)``.

    Raises:
        ConfigError: unknown name (with a did-you-mean), keyword arguments the model does not
            accept (with the accepted ones), a factory that cannot be loaded or that does not
            return an ``nn.Module``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model name must be a non-empty string; got {name!r}.")
    if name.startswith(MONAI_PREFIX):
        fn = _resolve_monai(name)
        kwargs = monai_kwargs(name[len(MONAI_PREFIX) :], kwargs, fn)
    elif ":" in name:
        fn = _resolve_factory(name)
    elif name in _MODELS:
        fn = _MODELS.get(name)
    else:
        raise ConfigError(_unknown_message(name))
    return _build(name, fn, kwargs)


def model_accepts(name: str, key: str) -> bool:
    """Whether the model called ``name`` takes the keyword argument ``key`` (True for MONAI
    networks, whose keywords are mapped, for factories taking ``**kwargs`` and for names that
    cannot be resolved here: :func:`create_model` reports those)."""
    if name.startswith(MONAI_PREFIX):
        return True
    if ":" in name:
        try:
            fn = _resolve_factory(name)
        except ConfigError:
            return True
    elif name in _MODELS:
        fn = _MODELS.get(name)
    else:
        return True
    names = parameter_names(fn)  # None: no signature to read
    return names is None or key in names or any(n.startswith("**") for n in names)


def check_model_kwargs(name: str, keys: Iterable[str]) -> None:
    """Before any data is read: model ``name`` exists and takes every keyword in ``keys`` (the
    common keys of MONAI networks are mapped, so they always pass; a model taking ``**kwargs``
    takes anything). Builds nothing.

    Raises:
        ConfigError: an unknown name, or a key the model does not take, with the messages
            :func:`create_model` gives (did-you-mean, accepted keys).
    """
    keys = list(keys)
    if name.startswith(MONAI_PREFIX):
        short = name[len(MONAI_PREFIX) :]
        accepted = accepted_keys(short, _resolve_monai(name))
        if accepted is not None:
            check_keys(short, accepted, {k: None for k in keys if k not in COMMON_KEYS})
        return
    if ":" in name:
        fn = _resolve_factory(name)
    elif name in _MODELS:
        fn = _MODELS.get(name)
    else:
        raise ConfigError(_unknown_message(name))
    names = parameter_names(fn)
    if names is None or any(n.startswith("**") for n in names):
        return
    unknown = [k for k in keys if k not in names]
    if unknown:
        reason = f"got an unexpected keyword argument {unknown[0]!r}"
        raise ConfigError(_bad_kwargs_message(name, fn, dict.fromkeys(keys), reason))


#: Keyword arguments that count a model's outputs (classes, segmentation channels).
OUTPUT_KEYS = ("num_classes", "out_channels", "classes", "out_shape")


def missing_output_key(name: str, kwargs: dict[str, Any]) -> str | None:
    """The keyword argument counting the outputs of model ``name`` when the model requires it
    (no default) and ``kwargs`` give none of :data:`OUTPUT_KEYS`; None otherwise, and for names
    that cannot be resolved here (:func:`create_model` reports those).

    Example: ``missing_output_key("monai.DenseNet121", {"in_channels": 1})`` -> ``"out_channels"``.
    """
    if any(k in kwargs for k in OUTPUT_KEYS):
        return None
    try:
        if name.startswith(MONAI_PREFIX):
            fn = _resolve_monai(name)
        elif ":" in name:
            fn = _resolve_factory(name)
        elif name in _MODELS:
            fn = _MODELS.get(name)
        else:
            return None
        params = inspect.signature(fn).parameters.values()
    except (ConfigError, TypeError, ValueError):
        return None
    required = {
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return next((k for k in OUTPUT_KEYS if k in required), None)


def accepted_parameters(fn: Callable[..., Any]) -> list[str]:
    """Names of the keyword arguments ``fn`` accepts (``**kwargs`` shown as ``**name``)."""
    return parameter_names(fn) or []


def _build(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> nn.Module:
    """Call ``fn(**kwargs)``, turning argument errors into a :class:`ConfigError`."""
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as e:
            raise ConfigError(_bad_kwargs_message(name, fn, kwargs, str(e))) from None
    try:
        model = fn(**kwargs)
    except TypeError as e:
        raise ConfigError(_bad_kwargs_message(name, fn, kwargs, str(e))) from e
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module; a model "
            f"factory must return the built nn.Module."
        )
    return model


def _bad_kwargs_message(
    name: str, fn: Callable[..., Any], kwargs: dict[str, Any], reason: str
) -> str:
    accepted = accepted_parameters(fn)
    takes_any = any(a.startswith("**") for a in accepted)
    unknown = [] if takes_any or not accepted else [k for k in kwargs if k not in accepted]
    hint = ""
    for k in unknown:
        close = difflib.get_close_matches(k, accepted, n=1, cutoff=0.6)
        if close:
            hint += f" Did you mean {close[0]!r} for {k!r}?"
    bad = f"unknown keyword arguments {unknown}" if unknown else f"arguments {sorted(kwargs)}"
    return (
        f"model {name!r} cannot be built with {bad} ({reason}).{hint} "
        f"Accepted parameters: {', '.join(accepted) or '(none)'}."
    )


def _unknown_message(name: str) -> str:
    candidates = list(_MODELS) + [MONAI_PREFIX + m for m in MONAI_MODELS]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"Unknown model {name!r}.{hint} Available: {', '.join(_MODELS)}; any MONAI network as "
        f"'monai.<Name>' (e.g. monai.UNet); or a factory as 'package.module:factory' or "
        f"'path/to/file.py:factory'."
    )


def _monai_nets() -> Any:
    try:
        return importlib.import_module("monai.networks.nets")
    except ImportError as e:  # pragma: no cover - monai is a core dependency
        raise ConfigError(f"MONAI models need the 'monai' package ({e}); pip install monai.") from e


def _resolve_monai(name: str) -> Callable[..., nn.Module]:
    attr = name[len(MONAI_PREFIX) :]
    nets = _monai_nets()
    obj = getattr(nets, attr, None) if attr and not attr.startswith("_") else None
    if obj is None or not callable(obj):
        available = [k for k in dir(nets) if not k.startswith("_") and callable(getattr(nets, k))]
        close = difflib.get_close_matches(attr, available, n=1, cutoff=0.6)
        hint = f" Did you mean 'monai.{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown MONAI network {name!r}: monai.networks.nets has no {attr!r}.{hint} "
            f"Common ones: {', '.join(MONAI_PREFIX + m for m in MONAI_MODELS)}."
        )
    return obj  # type: ignore[no-any-return]


def _resolve_factory(name: str) -> Callable[..., nn.Module]:
    """``"pkg.mod:fn"`` or ``"file.py:fn"`` -> the callable ``fn``."""
    target, _, attr = name.rpartition(":")
    if not target or not attr.isidentifier():
        raise ConfigError(
            f"model factory {name!r} must look like 'package.module:factory' or "
            f"'path/to/file.py:factory' with a Python identifier after ':'."
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file(target, name)
        where = f"file {target!r}"
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ConfigError(
                f"model factory {name!r}: cannot import module {target!r} ({e}). Check that it "
                f"is installed or on PYTHONPATH, or give a file path as 'path/to/file.py:{attr}'."
            ) from e
        where = f"module {target!r}"
    fn = getattr(module, attr, None)
    if fn is None:
        public = sorted(
            k for k in vars(module) if not k.startswith("_") and callable(vars(module)[k])
        )
        close = difflib.get_close_matches(attr, public, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"model factory {name!r}: {where} has no attribute {attr!r}.{hint} "
            f"Callables defined there: {', '.join(public) or '(none)'}."
        )
    if not callable(fn):
        raise ConfigError(
            f"model factory {name!r}: {attr!r} in {where} is a {type(fn).__name__}, not callable."
        )
    return fn  # type: ignore[no-any-return]


def _load_file(target: str, name: str) -> Any:
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"model factory {name!r}: file {str(path)!r} does not exist. Give the path of a "
            f"Python file (absolute or relative to {str(Path.cwd())!r})."
        )
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"medprune_user_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"model factory {name!r}: cannot load {str(path)!r} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that classes defined there can be pickled
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise ConfigError(
            f"model factory {name!r}: executing {str(path)!r} failed: {type(e).__name__}: {e}"
        ) from e
    return module
