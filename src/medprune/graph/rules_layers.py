"""Propagation rules for layers that own parameters: conv, transposed conv, linear, norms, PReLU.

Each rule reads the traced shapes of its node and records, in :class:`~medprune.graph.propagate.State`,
which parameter dimensions carry which channel labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medprune.graph.export import module_path
from medprune.graph.propagate import Chan, ParamRef, State, out_shape

__all__ = ["LAYER_RULES"]


def _arg(node: torch.fx.Node, i: int, name: str, default: Any = None) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def unknown(state: State, node: torch.fx.Node, reason: str) -> None:
    from medprune.graph.rules import unknown as _unknown

    _unknown(state, node, reason)


def _conv_parts(node: torch.fx.Node, name: str) -> tuple[bool, int]:
    """(transposed, groups) of any convolution op."""
    if name in ("convolution", "_convolution"):
        return bool(_arg(node, 6, "transposed", False)), int(_arg(node, 8, "groups", 1))
    if name.startswith("conv_transpose"):
        return True, int(_arg(node, 6, "groups", 1))
    return False, int(_arg(node, 6, "groups", 1))


def conv(state: State, node: torch.fx.Node, name: str) -> None:
    """conv1d/2d/3d, conv_transpose1d/2d/3d, convolution (grouped and depthwise included)."""
    x = state.val(node.args[0])
    w = state.val(node.args[1])
    b = state.val(_arg(node, 2, "bias"))
    shape = out_shape(node)
    transposed, groups = _conv_parts(node, name)
    bias_ok = b is None or isinstance(b, ParamRef)
    if not (isinstance(w, ParamRef) and isinstance(x, Chan) and x.dim == 1 and bias_ok and shape):
        unknown(state, node, "convolution whose weight is not a parameter of the model")
        return
    c_in = x.labels.size
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    c_out = w.shape[out_dim] * groups if transposed else w.shape[0]
    kernel = math.prod(w.shape[2:])
    in_shape = out_shape(node.args[0]) or ()
    if transposed:
        base = math.prod(in_shape) * w.shape[1] * kernel
    else:
        base = math.prod(shape) * w.shape[1] * kernel
    if groups == 1:
        w_in = state.tensor_dim(w.fqn, in_dim, "in", w.shape[in_dim])
        state.couple(w_in, x.labels)
        w_out = state.tensor_dim(w.fqn, out_dim, "out", w.shape[out_dim])
        state.costs.append((base, (w_in, w_out)))
    elif c_in % groups or c_out % groups:
        unknown(state, node, f"convolution with groups={groups} not dividing {c_in}->{c_out}")
        return
    else:
        w_out = _grouped(state, w, x, groups, c_out, transposed)
        state.costs.append((base, (state.tensor_dims[(w.fqn, 0)].labels,)))
    state.consumers.append((x.labels, x.zero))
    if b is not None:
        state.couple(state.tensor_dim(b.fqn, 0, "out", b.shape[0]), w_out)
    state.set(node, Chan(1, w_out, np.ones(w_out.size, dtype=bool)))


def _grouped(
    state: State, w: ParamRef, x: Chan, groups: int, c_out: int, transposed: bool
) -> np.ndarray:
    """Grouped / depthwise conv: conv group ``j`` reads input block ``j`` only, so input block
    ``j`` and output block ``j`` are removed together (one removable unit, ``groups`` drops by 1).
    Depthwise (one input channel per group) is the case of blocks of size 1."""
    c_in = x.labels.size
    if transposed:  # weight (C_in, C_out/g, *K): dim 0 follows the input channels
        state.couple(state.tensor_dim(w.fqn, 0, "in", w.shape[0]), x.labels)
        out = state.new(c_out)
    else:  # weight (C_out, C_in/g, *K): dim 0 is the output channels
        out = state.tensor_dim(w.fqn, 0, "out", w.shape[0])
    blocks = np.concatenate([x.labels.reshape(groups, c_in // groups), out.reshape(groups, -1)], 1)
    state.couple(blocks[:, :-1].reshape(-1), blocks[:, 1:].reshape(-1))
    return out


def linear(state: State, node: torch.fx.Node, name: str) -> None:
    """aten.linear: weight ``(out, in)`` acts on the last dim."""
    x = state.val(node.args[0])
    w = state.val(node.args[1])
    b = state.val(_arg(node, 2, "bias"))
    shape = out_shape(node)
    in_shape = out_shape(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    if not (isinstance(w, ParamRef) and isinstance(x, Chan) and shape and in_shape):
        unknown(state, node, "linear whose weight is not a parameter of the model")
        return
    if b is not None and not isinstance(b, ParamRef):
        unknown(state, node, "linear whose bias is not a parameter of the model")
        return
    base = math.prod(shape) * w.shape[1]
    last = len(in_shape) - 1
    w_out = state.tensor_dim(w.fqn, 0, "out", w.shape[0])
    if b is not None:
        state.couple(state.tensor_dim(b.fqn, 0, "out", b.shape[0]), w_out)
    if x.dim == last:
        w_in = state.tensor_dim(w.fqn, 1, "in", w.shape[1])
        state.couple(w_in, x.labels)
        state.consumers.append((x.labels, x.zero))
        state.costs.append((base, (w_in, w_out)))
        state.set(node, Chan(last, w_out, np.ones(w_out.size, dtype=bool)))
        return
    if x.labels.size and int(x.labels[0]) in state.guessed:
        # the input came out of an op without a rule, whose channel dim was only guessed (dim 1:
        # the tokens of a (B, N, D) transformer stream): read the last dim as the features, so
        # the hidden units of an MLP block behind it stay prunable.
        w_in = state.tensor_dim(w.fqn, 1, "in", w.shape[1])
        state.pin(w_in, "linear reading the output of an op without a rule", report=False)
        state.costs.append((base, (w_in, w_out)))
        state.set(node, Chan(last, w_out, np.ones(w_out.size, dtype=bool)))
        return
    # linear over a non-channel dim: the channel dim passes through unchanged.
    state.pin(w_out, "linear over a non-channel dim keeps its features", report=False)
    state.costs.append((base, (x.labels,)))
    zero = x.zero if b is None else np.zeros(x.labels.size, dtype=bool)
    state.set(node, Chan(x.dim, x.labels, zero))


def _norm_params(node: torch.fx.Node, name: str) -> tuple[list[Any], int | None]:
    """(tensor args of the norm, num_groups or None)."""
    if name in ("batch_norm", "instance_norm", "native_batch_norm") or name.startswith(
        "_native_batch_norm_legit"
    ):
        return [node.args[i] if len(node.args) > i else None for i in range(1, 5)], None
    if name == "group_norm":
        return [_arg(node, 2, "weight"), _arg(node, 3, "bias")], int(node.args[1])
    if name == "native_group_norm":
        return [node.args[1], node.args[2]], int(node.args[6])
    raise KeyError(name)


def norm(state: State, node: torch.fx.Node, name: str) -> None:
    """batch_norm / instance_norm / group_norm (and native variants): per-channel slices."""
    x = state.val(node.args[0])
    tensor_args, num_groups = _norm_params(node, name)
    refs = [state.val(a) for a in tensor_args]
    if (
        not isinstance(x, Chan)
        or x.dim != 1
        or any(r is not None and not isinstance(r, ParamRef) for r in refs)
    ):
        unknown(state, node, f"{name} on a tensor without a channel dim 1 or with computed params")
        return
    c = x.labels.size
    for r in refs:
        if r is not None:
            state.couple(state.tensor_dim(r.fqn, 0, "per_channel", r.shape[0]), x.labels)
    path = module_path(node)
    state.module_dims.append((path, name, x.labels))
    if num_groups is not None:
        state.gn_blocks.append((path, x.labels, c // max(num_groups, 1)))
    affine = len(refs) >= 2 and refs[0] is not None and refs[1] is not None
    zero = np.ones(c, dtype=bool) if affine else x.zero.copy()
    out = Chan(1, x.labels, zero)
    shapes = node.meta.get("val")
    if isinstance(shapes, (list, tuple)):
        state.set(node, [out] + [None] * (len(shapes) - 1))
    else:
        state.set(node, out)


def layer_norm(state: State, node: torch.fx.Node, name: str) -> None:
    """layer_norm: pins the channels when it normalises over the channel dim."""
    x = state.val(node.args[0])
    normalized = list(node.args[1])
    refs = [state.val(_arg(node, 2, "weight")), state.val(_arg(node, 3, "bias"))]
    in_shape = out_shape(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    if not isinstance(x, Chan) or in_shape is None:
        unknown(state, node, "layer_norm on an untracked tensor")
        return
    first_norm_dim = len(in_shape) - len(normalized)
    reason = "layer_norm over the channel dim (its statistics mix channels)"
    if x.dim >= first_norm_dim:
        state.pin(x.labels, reason)
        for r in refs:
            if isinstance(r, ParamRef):
                state.pin_param(r, reason)
        zero = np.zeros(x.labels.size, dtype=bool)
    else:
        for r in refs:
            if isinstance(r, ParamRef):
                state.pin_param(r, "layer_norm parameters (not channel-indexed)")
        zero = x.zero if refs[1] is None else np.zeros(x.labels.size, dtype=bool)
    out = Chan(x.dim, x.labels, zero)
    shapes = node.meta.get("val")
    state.set(node, [out, None, None] if isinstance(shapes, (list, tuple)) else out)


def prelu(state: State, node: torch.fx.Node, name: str) -> None:
    """prelu: per-channel slopes are a per-channel slice; a single slope needs nothing."""
    x = state.val(node.args[0])
    w = state.val(node.args[1])
    if not isinstance(x, Chan) or not isinstance(w, ParamRef):
        unknown(state, node, "prelu with a computed slope")
        return
    n = math.prod(w.shape)
    if n > 1:
        if x.dim != 1 or n != x.labels.size:
            unknown(state, node, f"prelu with {n} slopes on channel dim {x.dim}")
            return
        state.couple(state.tensor_dim(w.fqn, 0, "per_channel", n), x.labels)
        state.module_dims.append((module_path(node), "prelu", x.labels))
    state.set(node, Chan(x.dim, x.labels, x.zero.copy()))


LAYER_RULES = {
    "conv1d": conv,
    "conv2d": conv,
    "conv3d": conv,
    "convolution": conv,
    "_convolution": conv,
    "conv_transpose1d": conv,
    "conv_transpose2d": conv,
    "conv_transpose3d": conv,
    "linear": linear,
    "batch_norm": norm,
    "native_batch_norm": norm,
    "_native_batch_norm_legit": norm,
    "_native_batch_norm_legit_no_training": norm,
    "_native_batch_norm_legit_functional": norm,
    "instance_norm": norm,
    "group_norm": norm,
    "native_group_norm": norm,
    "layer_norm": layer_norm,
    "native_layer_norm": layer_norm,
    "prelu": prelu,
    "_prelu_kernel": prelu,
}
