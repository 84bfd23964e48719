"""Propagation rules for parameter-free ops: activations, pooling, padding, arithmetic, shapes.

Rules are looked up by the ATen op name with a trailing in-place ``_`` removed (``relu_`` ->
``relu``). An op with no rule pins every channel it touches and is reported in ``graph.pinned``.

Zero-preserving ops (a zero channel stays exactly zero): relu, relu6, leaky_relu, prelu, elu,
selu, celu, gelu, silu, mish, hardswish, hardtanh, tanh, erf, abs, neg, sqrt, dropout, pooling,
interpolation, zero padding, clone / contiguous / dtype casts, mean / sum / max over other dims.
Not zero-preserving: sigmoid, hardsigmoid, exp, log, softplus, softmax, adding a constant; a
channel that reaches a consumer through them is still removable but not *exactly* (the group's
``zero_exact`` is False).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from medprune.graph.propagate import (
    Chan,
    ParamRef,
    State,
    Untracked,
    fresh_chan,
    meta_shapes,
    op_name,
    out_shape,
)
from medprune.graph.rules_layers import LAYER_RULES

__all__ = ["apply_rule", "unknown"]

ZERO_PRESERVING = {
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "hardswish",
    "hardtanh",
    "tanh",
    "erf",
    "abs",
    "neg",
    "sqrt",
    "square",
    "sign",
    "dropout",
    "feature_dropout",
    "alpha_dropout",
    "feature_alpha_dropout",
    "native_dropout",
    "clone",
    "contiguous",
    "to",
    "_to_copy",
    "type_as",
    "detach",
    "alias",
    "lift_fresh_copy",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "upsample_nearest1d",
    "upsample_nearest2d",
    "upsample_nearest3d",
    "upsample_linear1d",
    "upsample_bilinear2d",
    "upsample_trilinear3d",
    "upsample_bicubic2d",
    "_upsample_nearest_exact1d",
    "_upsample_nearest_exact2d",
    "_upsample_nearest_exact3d",
    "_upsample_bilinear2d_aa",
    "reflection_pad1d",
    "reflection_pad2d",
    "reflection_pad3d",
    "replication_pad1d",
    "replication_pad2d",
    "replication_pad3d",
    "float",
    "double",
    "half",
    "bfloat16",
    "clamp",
    "clip",
    "clamp_min",
    "clamp_max",
    "dequantize",
}
NOT_ZERO_PRESERVING = {
    "sigmoid",
    "hardsigmoid",
    "exp",
    "log",
    "log1p",
    "expm1",
    "softplus",
    "log_sigmoid",
    "cos",
    "sin",
    "rsqrt",
    "reciprocal",
    "threshold",
    "logit",
    "erfc",
    "exp2",
}
ADD_LIKE = {"add", "sub", "rsub", "maximum", "minimum", "where", "lerp", "fmax", "fmin"}
MUL_LIKE = {"mul", "addcmul"}
DIV_LIKE = {"div", "true_divide", "floor_divide", "remainder", "fmod", "pow", "atan2"}
COMPARE = {"eq", "ne", "gt", "ge", "lt", "le", "logical_and", "logical_or"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod", "norm"}
NO_OP = {"_assert_tensor_metadata", "_assert_async", "sym_size", "sym_numel", "sym_stride",
         "sym_storage_offset", "_assert_scalar", "sym_constrain_range_for_size"}  # fmt: skip


def base_name(node: torch.fx.Node) -> str:
    """Op name without namespace and in-place suffix: ``aten.relu_`` -> ``relu``."""
    name = op_name(node).rpartition(".")[2]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def _tensor_values(state: State, node: torch.fx.Node) -> list[Any]:
    found: list[Any] = []

    def record(a: torch.fx.Node) -> torch.fx.Node:
        found.append(state.val(a))
        return a

    torch.fx.node.map_arg((node.args, node.kwargs), record)  # nested lists / dicts, in order
    return found


def _flat(values: Any) -> list[Any]:
    if isinstance(values, (list, tuple)):
        return [x for v in values for x in _flat(v)]
    return [values]


def _set_outputs(state: State, node: torch.fx.Node, make: Any) -> None:
    shapes = meta_shapes(node)
    values = [make(s) if s is not None else None for s in shapes]
    v = node.meta.get("val")
    state.set(node, values if isinstance(v, (list, tuple)) else values[0])


def unknown(state: State, node: torch.fx.Node, reason: str | None = None) -> None:
    """Pin every channel the op touches; its outputs get fresh pinned labels."""
    reason = reason or f"no propagation rule for {op_name(node)}"
    for v in _flat(_tensor_values(state, node)):
        if isinstance(v, Chan):
            state.pin(v.labels, reason)
        elif isinstance(v, ParamRef):
            state.pin_param(v, reason)
    state.pinned_ops.setdefault(state.where(node), reason)
    _set_outputs(state, node, lambda s: fresh_chan(state, s, reason))


def _untracked_or_unknown(state: State, node: torch.fx.Node) -> None:
    values = _flat(_tensor_values(state, node))
    if any(isinstance(v, (Chan, ParamRef)) for v in values):
        unknown(state, node)
    else:
        _set_outputs(state, node, lambda s: Untracked(s))


def unary(state: State, node: torch.fx.Node, name: str) -> None:
    """Channel-preserving ops: activations, pooling, interpolation, dropout, casts."""
    x = state.val(node.args[0])
    others = [v for v in _flat(_tensor_values(state, node))[1:] if v is not None]
    if any(isinstance(v, (Chan, ParamRef)) for v in others):
        elementwise(state, node, name)
        return
    if isinstance(x, ParamRef):
        state.pin_param(x, f"parameter used in {op_name(node)}")
        _set_outputs(state, node, lambda s: Untracked(s))
        return
    if not isinstance(x, Chan):
        _set_outputs(state, node, lambda s: Untracked(s))
        return
    preserving = name in ZERO_PRESERVING and _clamp_keeps_zero(node, name)

    def make(shape: tuple[int, ...]) -> Any:
        if len(shape) <= x.dim or shape[x.dim] != x.labels.size:
            return None
        zero = x.zero.copy() if preserving else np.zeros(x.labels.size, dtype=bool)
        return Chan(x.dim, x.labels, zero)

    shapes = meta_shapes(node)
    if shapes[0] is None or make(shapes[0]) is None:
        unknown(state, node, f"{op_name(node)} changes the channel count")
        return
    _set_outputs(state, node, make)


def _clamp_keeps_zero(node: torch.fx.Node, name: str) -> bool:
    if name not in ("clamp", "clip", "clamp_min", "clamp_max", "hardtanh"):
        return True
    bounds = [a for a in node.args[1:] if isinstance(a, numbers.Number)]
    if name == "clamp_min":
        return all(b <= 0 for b in bounds)
    if name == "clamp_max":
        return all(b >= 0 for b in bounds)
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min", -1.0)
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max", 1.0)
    return (lo is None or lo <= 0) and (hi is None or hi >= 0)


def _shape_of(arg: Any, value: Any) -> tuple[int, ...]:
    if isinstance(value, ParamRef):
        return value.shape
    if isinstance(value, Untracked):
        return value.shape
    if isinstance(arg, torch.fx.Node):
        return out_shape(arg) or ()
    return ()


def elementwise(state: State, node: torch.fx.Node, name: str) -> None:
    """Broadcasting n-ary ops: two feature maps couple their channels; a parameter of shape
    ``(C, 1, 1)`` becomes a per-channel slice; a channel-sized constant pins the channels."""
    shape = out_shape(node)
    if shape is None:
        _untracked_or_unknown(state, node)
        return
    nd = len(shape)
    operands = [(a, state.val(a)) for a in node.args if isinstance(a, torch.fx.Node)]
    operands += [(a, state.val(a)) for a in node.kwargs.values() if isinstance(a, torch.fx.Node)]
    chans = [(a, v) for a, v in operands if isinstance(v, Chan)]
    ref: tuple[int, Chan] | None = None
    for a, v in chans:
        ad = v.dim + nd - len(_shape_of(a, v))
        if 0 <= ad < nd and v.labels.size == shape[ad]:
            ref = (ad, v)
            break
    if ref is None:
        for _, v in operands:
            if isinstance(v, ParamRef):
                state.pin_param(v, f"parameter used in {op_name(node)} without channel maps")
        _set_outputs(state, node, lambda s: Untracked(s))
        return
    ad, rv = ref
    c = rv.labels.size
    zeros: list[np.ndarray] = []
    for a, v in operands:
        vs = _shape_of(a, v)
        vd = len(vs) - (nd - ad)
        size = vs[vd] if vd >= 0 else 1
        if isinstance(v, Chan):
            if v.dim == vd and v.labels.size == c:
                state.couple(rv.labels, v.labels)
                zeros.append(v.zero)
            elif v.dim == vd and v.labels.size == 1:
                zeros.append(np.repeat(v.zero, c))
            elif v.labels.size == 1 and size == 1:
                zeros.append(np.zeros(c, dtype=bool))
            else:
                reason = f"{op_name(node)} mixes channel dims of its operands"
                state.pin(rv.labels, reason)
                state.pin(v.labels, reason)
                zeros.append(np.zeros(c, dtype=bool))
        elif isinstance(v, ParamRef):
            if size == c and c > 1:
                state.couple(state.tensor_dim(v.fqn, vd, "per_channel", c), rv.labels)
                zeros.append(np.ones(c, dtype=bool))
            else:
                zeros.append(np.zeros(c, dtype=bool))
        elif isinstance(v, Untracked):
            if size == c and c > 1 and not v.bcast:
                state.pin(rv.labels, f"{op_name(node)} with a channel-sized constant tensor")
            zeros.append(np.zeros(c, dtype=bool))
    scalars = [
        a for a in node.args[1:] if isinstance(a, numbers.Number) and not isinstance(a, bool)
    ]
    zero = _combine(name, zeros, scalars, c)
    state.set(node, Chan(ad, rv.labels, zero))


def _combine(name: str, zeros: list[np.ndarray], scalars: list[Any], c: int) -> np.ndarray:
    if not zeros:
        return np.zeros(c, dtype=bool)
    if name in MUL_LIKE and name != "addcmul":
        return np.logical_or.reduce(zeros)
    if name == "pow":
        keeps = bool(scalars) and all(isinstance(v, (int, float)) and v > 0 for v in scalars)
        return zeros[0].copy() if keeps else np.zeros(c, dtype=bool)
    if name in DIV_LIKE:
        return zeros[0].copy()
    if name in COMPARE:
        return np.zeros(c, dtype=bool)
    out = np.logical_and.reduce(zeros)
    if name in ("add", "sub", "rsub") and any(s != 0 for s in scalars[:1]) and len(zeros) == 1:
        return np.zeros(c, dtype=bool)
    return out


def apply_rule(state: State, node: torch.fx.Node) -> None:
    """Dispatch ``node`` to its rule (or pin it)."""
    from medprune.graph.rules_shape import SHAPE_RULES

    name = base_name(node)
    if name in NO_OP:
        state.set(node, None)
        return
    if op_name(node).endswith("_") and _mutates_view(node):
        unknown(state, node, f"in-place {op_name(node)} on a view (mutates another tensor)")
        return
    if name in LAYER_RULES:
        LAYER_RULES[name](state, node, name)
    elif name in SHAPE_RULES:
        SHAPE_RULES[name](state, node, name)
    elif name in ZERO_PRESERVING or name in NOT_ZERO_PRESERVING:
        unary(state, node, name)
    elif name in ADD_LIKE | MUL_LIKE | DIV_LIKE | COMPARE:
        elementwise(state, node, name)
    else:
        values = _flat(_tensor_values(state, node))
        if not any(isinstance(v, (Chan, ParamRef)) for v in values):
            _set_outputs(state, node, lambda s: Untracked(s))
        else:
            unknown(state, node)


VIEW_OPS = {"view", "reshape", "_unsafe_view", "slice", "select", "narrow", "expand", "permute",
            "transpose", "t", "squeeze", "unsqueeze", "as_strided", "diagonal", "unfold",
            "split", "chunk", "unbind", "flatten", "alias", "getitem", "movedim"}  # fmt: skip


def _mutates_view(node: torch.fx.Node) -> bool:
    """True when an in-place op writes into the output of a view op (aliasing another tensor)."""
    src = node.args[0] if node.args else None
    if not isinstance(src, torch.fx.Node) or src.op != "call_function":
        return False
    if getattr(src.target, "__name__", "") == "getitem":
        parent = src.args[0]
        return isinstance(parent, torch.fx.Node) and base_name(parent) in VIEW_OPS
    return base_name(src) in VIEW_OPS
