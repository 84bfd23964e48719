"""The common keyword arguments of :func:`~medprune.models.create_model`, mapped onto each MONAI
network's own constructor (the table is in the :mod:`medprune.models.registry` docstring).

medprune's pipeline builds every model with ``in_channels``, ``num_classes`` (classifiers) or
``out_channels`` (segmenters) and ``spatial_dims``, plus the hint ``image_size`` for MONAI
networks. MONAI spells these differently per network (``resnet18`` wants ``n_input_channels``,
``DenseNet121`` counts its classes in ``out_channels``, ``Classifier`` wants ``in_shape``), and
some networks have required arguments a user cannot be expected to know (``UNet`` channels and
strides, ``DynUNet`` kernel sizes). :func:`monai_kwargs` turns the common form into the network's.

Example::

    monai_kwargs("resnet18", {"in_channels": 1, "num_classes": 2, "spatial_dims": 2})
    # {'n_input_channels': 1, 'num_classes': 2, 'spatial_dims': 2}
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from medprune.errors import ConfigError

__all__ = ["COMMON_KEYS", "accepted_keys", "check_keys", "monai_kwargs"]

log = logging.getLogger(__name__)

#: Keyword arguments every model name understands; ``image_size`` (int or one per spatial dim)
#: is only a hint for the MONAI defaults below and is dropped when a network has no use for it.
COMMON_KEYS = ("in_channels", "num_classes", "out_channels", "spatial_dims", "image_size")

#: Networks whose ``**kwargs`` go to another constructor: (that class, its arguments the
#: wrapper fills itself, which a user may not give).
_FORWARDED: dict[str, tuple[str, frozenset[str]]] = {
    **{
        f"resnet{d}": ("ResNet", frozenset({"block", "layers", "block_inplanes"}))
        for d in (10, 18, 34, 50, 101, 152, 200)
    },
    **{f"DenseNet{d}": ("DenseNet", frozenset()) for d in (121, 169, 201, 264)},
    **{
        n: ("SENet", frozenset({"block"}))
        for n in (
            "SENet154",
            "SEResNet50",
            "SEResNet101",
            "SEResNet152",
            "SEResNeXt50",
            "SEResNeXt101",
        )
    },  # fmt: skip
}

#: Required (or download-triggering) arguments given a default when the user gives none.
_FIXED_DEFAULTS: dict[str, dict[str, Any]] = {
    "EfficientNetBN": {"model_name": "efficientnet-b0", "pretrained": False},
    "FlexibleUNet": {"backbone": "efficientnet-b0", "pretrained": False},
}

#: Channels of the encoder levels of the derived UNet / AttentionUnet / Classifier defaults.
_LEVEL_CHANNELS = (16, 32, 64, 128, 256)
_MAX_DOWNSAMPLINGS = 4


def accepted_keys(name: str, fn: Callable[..., Any]) -> list[str] | None:
    """Keyword arguments MONAI network ``name`` (``fn``) accepts; None when it takes any.

    A network that forwards ``**kwargs`` to a base constructor (``resnet18`` -> ``ResNet``,
    ``DenseNet121`` -> ``DenseNet``, ``SEResNet50`` -> ``SENet``) accepts the union, minus
    the base arguments the wrapper fills itself.
    """
    own = parameter_names(fn)
    if own is None:
        return None
    takes_any = any(k.startswith("**") for k in own)
    names = [k for k in own if not k.startswith("**")]
    if not takes_any:
        return names
    target = _forward_target(name, fn)
    if target is None:
        return None
    base, filled = target
    base_names = [k for k in (parameter_names(base) or []) if not k.startswith("**")]
    return names + [k for k in base_names if k not in names and k not in filled]


def monai_kwargs(
    name: str, kwargs: dict[str, Any], fn: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """Map the common keyword arguments onto MONAI network ``name``'s constructor.

    Args:
        name: the attribute of ``monai.networks.nets`` (``"resnet18"``, ``"UNet"``).
        kwargs: the user's and the pipeline's keyword arguments; the :data:`COMMON_KEYS` are
            renamed or absorbed, the network's own arguments pass through unchanged and win over
            a common one that maps onto them.
        fn: the network's class or factory (default: looked up in ``monai.networks.nets``).

    Returns:
        The keyword arguments to call ``fn`` with, derived defaults included.

    Raises:
        ConfigError: a keyword argument the network does not take (naming the network, the key
            and the accepted keys), or common arguments that contradict each other.
    """
    if fn is None:
        import monai.networks.nets as nets

        fn = getattr(nets, name)
    accepted = accepted_keys(name, fn)
    if accepted is None:  # takes anything: pass through, minus the hint
        return {k: v for k, v in kwargs.items() if k != "image_size"}
    out = {k: v for k, v in kwargs.items() if k not in COMMON_KEYS or k in accepted}
    common = {k: kwargs[k] for k in COMMON_KEYS if k in kwargs and k not in accepted}
    dims = kwargs.get("spatial_dims", out.get("spatial_dims"))
    size = _image_size(kwargs.get("image_size"), dims, name)
    _map_in_channels(name, accepted, common, out, size)
    _map_outputs(name, accepted, common, out)
    _map_spatial_dims(name, accepted, common, out)
    check_keys(name, accepted, out)
    _add_defaults(name, out, size)
    return out


def parameter_names(fn: Callable[..., Any]) -> list[str] | None:
    """Keyword arguments ``fn`` accepts (``**kwargs`` as ``"**kwargs"``); None without a signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    names = []
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            names.append(f"**{p.name}")
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return names


def _forward_target(name: str, fn: Callable[..., Any]) -> tuple[Any, frozenset[str]] | None:
    import monai.networks.nets as nets

    if name in _FORWARDED:
        base_name, filled = _FORWARDED[name]
        return getattr(nets, base_name), filled
    if inspect.isclass(fn):  # a subclass handing **kwargs to its parent
        for base in fn.__mro__[1:]:
            if base.__module__.startswith("monai.") and "__init__" in vars(base):
                return base, frozenset(parameter_names(fn) or ())
    return None


def _image_size(value: Any, dims: Any, name: str) -> tuple[int, ...] | None:
    """``image_size`` as one int per spatial dimension (None when not given)."""
    if value is None:
        return None
    n = int(dims) if isinstance(dims, int) else None
    if isinstance(value, int):
        return (value,) * (n or 2)
    try:
        size = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        size = ()
    if not size or (n is not None and len(size) != n):
        raise ConfigError(
            f"model 'monai.{name}': image_size must be an int or one int per spatial dimension "
            f"(spatial_dims={dims}); got {value!r}."
        )
    return size


def _map_in_channels(
    name: str,
    accepted: list[str],
    common: dict[str, Any],
    out: dict[str, Any],
    size: tuple[int, ...] | None,
) -> None:
    if "in_channels" not in common:
        return
    c_in = common["in_channels"]
    if "n_input_channels" in accepted:
        out.setdefault("n_input_channels", c_in)
    elif "in_shape" in accepted:
        if "in_shape" not in out:
            if size is None:
                raise ConfigError(_needs_in_shape(name))
            out["in_shape"] = (int(c_in), *size)
        elif int(out["in_shape"][0]) != int(c_in):
            raise ConfigError(
                f"model 'monai.{name}': in_shape {tuple(out['in_shape'])} has "
                f"{out['in_shape'][0]} channels but in_channels is {c_in}; make them agree."
            )
    else:
        raise ConfigError(_not_taken(name, "in_channels", accepted))


def _needs_in_shape(name: str) -> str:
    return (
        f"model 'monai.{name}' needs in_shape=(C, *S) (the input's channels and spatial size); "
        f"give model.kwargs.in_shape, or in_channels with image_size (on the command line: "
        f"--input-shape B,C,H,W)."
    )


def _map_outputs(
    name: str, accepted: list[str], common: dict[str, Any], out: dict[str, Any]
) -> None:
    given = {k: common[k] for k in ("num_classes", "out_channels") if k in common}
    if not given:
        return
    values = {int(v) for v in given.values()}
    native = [k for k in ("num_classes", "out_channels") if k in accepted and k in out]
    if len(values) > 1 and not native:
        raise ConfigError(
            f"model 'monai.{name}' got num_classes={given.get('num_classes')} and "
            f"out_channels={given.get('out_channels')}; give one number of outputs."
        )
    if native:
        return  # the network's own spelling was given: it wins
    n = values.pop()
    for key in ("num_classes", "out_channels", "classes"):
        if key in accepted:
            out.setdefault(key, n)
            return
    if "out_shape" in accepted:
        out.setdefault("out_shape", (n,))
        return
    raise ConfigError(_not_taken(name, next(iter(given)), accepted))


def _map_spatial_dims(
    name: str, accepted: list[str], common: dict[str, Any], out: dict[str, Any]
) -> None:
    if "spatial_dims" not in common:
        return
    dims = int(common["spatial_dims"])
    if "dimensions" in accepted:  # older MONAI spelling
        out.setdefault("dimensions", dims)
    elif "in_shape" in accepted and "in_shape" in out:
        if len(out["in_shape"]) - 1 != dims:
            raise ConfigError(
                f"model 'monai.{name}': in_shape {tuple(out['in_shape'])} has "
                f"{len(out['in_shape']) - 1} spatial dimensions but spatial_dims is {dims}."
            )
    else:
        log.debug("monai.%s takes no spatial_dims; %d dropped", name, dims)


def check_keys(name: str, accepted: list[str], out: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first key of ``out`` that MONAI network ``name`` does
    not take (``accepted``), with a did-you-mean and the accepted keys."""
    for key in out:
        if key not in accepted:
            raise ConfigError(_not_taken(name, key, accepted))


def _not_taken(name: str, key: str, accepted: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"model 'monai.{name}' does not take the keyword argument {key!r}.{hint} "
        f"Accepted keys: {', '.join(accepted)}."
    )


def _downsamplings(size: tuple[int, ...] | None) -> int:
    """How many times every spatial size halves evenly, leaving at least 2 (1..4; 4 when the
    size is unknown): the bottleneck of a U-Net normalises per instance and skips concatenate."""
    if size is None:
        return _MAX_DOWNSAMPLINGS
    n = 0
    while n < _MAX_DOWNSAMPLINGS and all(
        s % 2 ** (n + 1) == 0 and s // 2 ** (n + 1) >= 2 for s in size
    ):
        n += 1
    return max(n, 1)


def _encoder_levels(size: Sequence[int]) -> int:
    """Stride-2 levels (1..4) that leave the smallest spatial size at 2 or more (MONAI's
    ``Classifier`` normalises its last map per instance, which needs more than one element)."""
    n = 1
    while n < _MAX_DOWNSAMPLINGS and min(int(s) for s in size) >= 2 ** (n + 2):
        n += 1
    return n


def _add_defaults(name: str, out: dict[str, Any], size: tuple[int, ...] | None) -> None:
    """Required arguments a user cannot be expected to give, derived when absent."""
    for key, value in _FIXED_DEFAULTS.get(name, {}).items():
        out.setdefault(key, value)
    if name in ("UNet", "AttentionUnet"):
        if "strides" in out and "channels" not in out:
            out["channels"] = _LEVEL_CHANNELS[: len(out["strides"]) + 1]
        n = len(out["channels"]) - 1 if "channels" in out else _downsamplings(size)
        out.setdefault("channels", _LEVEL_CHANNELS[: n + 1])
        out.setdefault("strides", (2,) * (len(out["channels"]) - 1))
    elif name in ("Classifier", "Regressor"):
        if "in_shape" not in out:
            raise ConfigError(_needs_in_shape(name))
        if "strides" in out and "channels" not in out:
            out["channels"] = _LEVEL_CHANNELS[: len(out["strides"])]
        n = len(out["channels"]) if "channels" in out else _encoder_levels(out["in_shape"][1:])
        out.setdefault("channels", _LEVEL_CHANNELS[:n])
        out.setdefault("strides", (2,) * len(out["channels"]))
    elif name == "DynUNet":
        _dynunet_defaults(out, size)
    elif name == "VNet":
        out.setdefault("dropout_dim", int(out.get("spatial_dims", 3)))


def _dynunet_defaults(out: dict[str, Any], size: tuple[int, ...] | None) -> None:
    """``kernel_size`` 3 at every level, ``strides`` 1 then 2, ``upsample_kernel_size`` the
    strides after the first; the depth is that of ``filters``, ``strides`` or ``kernel_size``
    when one is given, else one level per even halving of ``image_size`` (5 at most)."""
    for key in ("filters", "strides", "kernel_size"):
        if out.get(key) is not None:
            levels = len(out[key])
            break
    else:
        levels = _downsamplings(size) + 1
    out.setdefault("kernel_size", [3] * levels)
    out.setdefault("strides", [1] + [2] * (levels - 1))
    out.setdefault("upsample_kernel_size", list(out["strides"])[1:])
