"""Per-module attribute updates after surgery sliced a module's tensors.

Surgery slices parameters and buffers generically; a handler then makes the module's own
attributes agree with the new shapes (``in_channels`` / ``out_channels`` / ``groups`` of convs,
``in_features`` / ``out_features`` of linears, ``num_features`` of norms, ``num_groups`` /
``num_channels`` of GroupNorm, ``num_parameters`` of PReLU). Register one for your own module
type with :func:`register_handler`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["ModuleChange", "register_handler", "update_module"]


@dataclass(frozen=True)
class ModuleChange:
    """What surgery did to one module.

    Attributes:
        old_attrs: the module's relevant attributes before slicing (``groups``, ``in_channels`` ...).
        channels: new channel count seen by the module's forward (norms, PReLU), or None.
    """

    old_attrs: dict[str, int]
    channels: int | None


Handler = Callable[[nn.Module, ModuleChange], None]
_HANDLERS: dict[type, Handler] = {}

_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "num_channels", "num_groups")


def register_handler(module_type: type) -> Callable[[Handler], Handler]:
    """Register ``fn(module, change)`` to update attributes of ``module_type`` after slicing."""

    def decorator(fn: Handler) -> Handler:
        _HANDLERS[module_type] = fn
        return fn

    return decorator


def snapshot(module: nn.Module) -> dict[str, int]:
    """The attributes handlers need, read before slicing."""
    return {a: getattr(module, a) for a in _ATTRS if isinstance(getattr(module, a, None), int)}


def update_module(module: nn.Module, change: ModuleChange) -> None:
    """Apply the most specific registered handler for ``module``'s type (if any)."""
    for cls in type(module).__mro__:
        handler = _HANDLERS.get(cls)
        if handler is not None:
            handler(module, change)
            return


@register_handler(nn.modules.conv._ConvNd)
def _conv(module: nn.Module, change: ModuleChange) -> None:
    old = change.old_attrs
    w = module.weight
    if old["groups"] > 1 and module.transposed:  # whole conv groups were removed
        module.in_channels = int(w.shape[0])
        module.groups = module.in_channels // (old["in_channels"] // old["groups"])
        module.out_channels = int(w.shape[1]) * module.groups
    elif old["groups"] > 1:
        module.out_channels = int(w.shape[0])
        module.groups = module.out_channels // (old["out_channels"] // old["groups"])
        module.in_channels = int(w.shape[1]) * module.groups
    elif module.transposed:
        module.in_channels = int(w.shape[0])
        module.out_channels = int(w.shape[1]) * module.groups
    else:
        module.out_channels = int(w.shape[0])
        module.in_channels = int(w.shape[1]) * module.groups


@register_handler(nn.Linear)
def _linear(module: nn.Module, change: ModuleChange) -> None:
    module.out_features, module.in_features = (int(s) for s in module.weight.shape)


def _count(module: nn.Module, change: ModuleChange, *names: str) -> int | None:
    for name in names:
        t = getattr(module, name, None)
        if t is not None and hasattr(t, "shape") and len(t.shape) == 1:
            return int(t.shape[0])
    return change.channels


@register_handler(nn.modules.batchnorm._NormBase)
def _norm(module: nn.Module, change: ModuleChange) -> None:
    n = _count(module, change, "weight", "running_mean")
    if n is not None:
        module.num_features = n


@register_handler(nn.GroupNorm)
def _group_norm(module: nn.Module, change: ModuleChange) -> None:
    n = _count(module, change, "weight")
    if n is None:
        return
    old_c, old_g = change.old_attrs["num_channels"], change.old_attrs["num_groups"]
    block = old_c // old_g
    module.num_channels = n
    module.num_groups = n // block


@register_handler(nn.PReLU)
def _prelu(module: nn.Module, change: ModuleChange) -> None:
    module.num_parameters = int(module.weight.numel())
