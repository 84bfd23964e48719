"""Propagation rules for shape ops: padding, reshape / flatten, permute, expand / repeat,
cat / stack, reductions and softmax.

All decisions are made from the traced shapes. A flatten that merges the channel dim with the
spatial dims repeats each label ``prod(S)`` times, so a following linear layer gets index rows of
length ``H*W``. A reshape that splits the channel dim into sub-pixel blocks is a probe
candidate (see :mod:`medprune.graph.rules_blocks`); any other split of the channel dim pins.
Slicing and splitting rules live in :mod:`medprune.graph.rules_blocks`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medprune.graph.propagate import (
    Candidate,
    Chan,
    ParamRef,
    State,
    Untracked,
    candidate_key,
    op_name,
    out_shape,
)
from medprune.graph.rules import _set_outputs, _untracked_or_unknown, unknown
from medprune.graph.rules_blocks import (
    BLOCK_RULES,
    _input,
    _norm_dim,
    _unconfirmed,
    channel_block_size,
    merge_blocks,
)

__all__ = ["SHAPE_RULES"]


def pad(state: State, node: torch.fx.Node, name: str) -> None:
    """pad / constant_pad_nd: spatial padding passes through; channel padding adds pinned channels."""
    x = state.val(node.args[0])
    if not isinstance(x, Chan):
        _untracked_or_unknown(state, node)
        return
    pads = list(node.args[1])
    mode = (
        node.args[2]
        if name == "pad" and len(node.args) > 2
        else node.kwargs.get("mode", "constant")
    )
    value = node.args[-1] if name == "constant_pad_nd" and len(node.args) > 2 else 0.0
    if name == "pad":
        value = node.args[3] if len(node.args) > 3 and node.args[3] is not None else 0.0
    nd = len(out_shape(node.args[0]) or ())
    lo = hi = 0
    for i in range(len(pads) // 2):
        if nd - 1 - i == x.dim:
            lo, hi = int(pads[2 * i]), int(pads[2 * i + 1])
    zero_ok = mode != "constant" or value == 0
    if lo == 0 and hi == 0:
        zero = x.zero.copy() if zero_ok else np.zeros(x.labels.size, dtype=bool)
        state.set(node, Chan(x.dim, x.labels, zero))
        return
    if mode != "constant" or lo < 0 or hi < 0:
        unknown(state, node, f"{mode} padding / cropping along channels")
        return
    reason = f"channel padding by {op_name(node)} (the {lo}+{hi} padded channels are kept)"
    lo_l, hi_l = state.new(lo), state.new(hi)
    state.pin(lo_l, reason)
    state.pin(hi_l, reason, report=False)
    labels = np.concatenate([lo_l, x.labels, hi_l])
    pad_zero = value == 0
    zero = np.concatenate([np.full(lo, pad_zero), x.zero, np.full(hi, pad_zero)])
    state.set(node, Chan(x.dim, labels, zero))


def reshape(state: State, node: torch.fx.Node, name: str) -> None:
    """view / reshape / flatten / unflatten / squeeze / unsqueeze, decided from the shapes."""
    x, in_shape = _input(state, node)
    shape = out_shape(node)
    if x is None or shape is None:
        _untracked_or_unknown(state, node)
        return
    c = x.labels.size
    pre = math.prod(in_shape[: x.dim])
    acc, dp = 1, 0
    while dp < len(shape) and acc < pre:
        acc *= shape[dp]
        dp += 1
    if c == 1:  # a single channel: keep it only where a size-1 dim survives
        ok = acc == pre and dp < len(shape) and shape[dp] == 1
        state.set(node, Chan(dp, x.labels, x.zero) if ok else Untracked(shape))
        return
    while dp < len(shape) and shape[dp] == 1:
        dp += 1
    if acc != pre or dp >= len(shape):
        unknown(state, node, f"{name} splits or merges the channel dim with the batch dim")
        return
    if shape[dp] == c:
        state.set(node, Chan(dp, x.labels, x.zero))
        return
    trailing = [math.prod(in_shape[x.dim + 1 : e]) for e in range(x.dim + 1, len(in_shape) + 1)]
    if shape[dp] % c == 0 and shape[dp] // c in trailing:
        r = shape[dp] // c  # flatten: one channel = r consecutive positions
        state.set(node, Chan(dp, np.repeat(x.labels, r), np.repeat(x.zero, r)))
        return
    k = channel_block_size(c, in_shape, x.dim, shape, dp)
    if k is not None:
        cand = Candidate(candidate_key(node), "channel_blocks", c, k, x.dim)
        state.candidates[cand.key] = cand
        if cand in state.accept:
            state.set(node, merge_blocks(state, x, k, dp))
            return
        unknown(
            state, node, _unconfirmed(state, f"{name} splits the channel dim ({c} -> {shape[dp]})")
        )
        return
    unknown(
        state,
        node,
        f"{name} splits the channel dim ({c} -> {shape[dp]}) into something other than blocks "
        "of sub-pixels (e.g. x.view(B, groups, -1)); its sizes are fixed in the trace",
    )


def permute(state: State, node: torch.fx.Node, name: str) -> None:
    """permute / transpose / t / movedim: the channel dim moves."""
    x, in_shape = _input(state, node)
    if x is None:
        _untracked_or_unknown(state, node)
        return
    nd = len(in_shape)
    if name == "permute":
        order = [_norm_dim(int(d), nd) for d in node.args[1]]
        new = order.index(x.dim)
    elif name in ("transpose", "t", "swapaxes"):
        a, b = (
            (0, 1)
            if name == "t"
            else (_norm_dim(int(node.args[1]), nd), _norm_dim(int(node.args[2]), nd))
        )
        new = b if x.dim == a else a if x.dim == b else x.dim
    else:
        unknown(state, node)
        return
    state.set(node, Chan(new, x.labels, x.zero))


def expand(state: State, node: torch.fx.Node, name: str) -> None:
    """expand: a size-1 channel dim becomes a broadcast; otherwise passes through."""
    x, in_shape = _input(state, node)
    shape = out_shape(node)
    if x is None or shape is None:
        _untracked_or_unknown(state, node)
        return
    new = x.dim + len(shape) - len(in_shape)
    if shape[new] == x.labels.size:
        state.set(node, Chan(new, x.labels, x.zero))
    else:
        state.set(node, Untracked(shape, bcast=True))


def repeat(state: State, node: torch.fx.Node, name: str) -> None:
    """repeat: tiling along channels repeats the labels (each copy removed with its source)."""
    x, in_shape = _input(state, node)
    shape = out_shape(node)
    if x is None or shape is None:
        _untracked_or_unknown(state, node)
        return
    new = x.dim + len(shape) - len(in_shape)
    r = shape[new] // max(x.labels.size, 1)
    state.set(node, Chan(new, np.tile(x.labels, r), np.tile(x.zero, r)))


def cat(state: State, node: torch.fx.Node, name: str) -> None:
    """cat along channels concatenates labels; along another dim it couples the inputs."""
    parts = list(node.args[0])
    shape = out_shape(node)
    if shape is None:
        _untracked_or_unknown(state, node)
        return
    nd = len(shape)
    dim = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("dim", 0))
    dim = _norm_dim(dim, nd)
    if name == "stack":
        _stack(state, node, parts, dim)
        return
    values = [state.val(p) for p in parts]
    chans = [v for v in values if isinstance(v, Chan)]
    if not chans:
        _untracked_or_unknown(state, node)
        return
    cdim = chans[0].dim
    if any(v.dim != cdim for v in chans):
        unknown(state, node, "cat of tensors with different channel dims")
        return
    if dim == cdim:
        labels, zeros = [], []
        for p, v in zip(parts, values, strict=False):
            if isinstance(v, Chan):
                labels.append(v.labels)
                zeros.append(v.zero)
            else:
                size = (out_shape(p) or (0,) * nd)[dim] if isinstance(p, torch.fx.Node) else 0
                fresh = state.new(size)
                state.pin(fresh, "cat with a constant along channels")
                if isinstance(v, ParamRef):
                    state.pin_param(v, "parameter concatenated along channels")
                labels.append(fresh)
                zeros.append(np.zeros(size, dtype=bool))
        state.set(node, Chan(cdim, np.concatenate(labels), np.concatenate(zeros)))
        return
    _couple_all(state, node, values, cdim)


def _couple_all(state: State, node: torch.fx.Node, values: list[Any], cdim: int) -> None:
    first = next(v for v in values if isinstance(v, Chan))
    zero = first.zero.copy()
    for v in values:
        if isinstance(v, Chan) and v.labels.size == first.labels.size:
            state.couple(first.labels, v.labels)
            zero &= v.zero
        elif isinstance(v, (Chan, ParamRef, Untracked)):
            unknown(state, node, "cat / stack of tensors whose channels do not line up")
            return
    state.set(node, Chan(cdim, first.labels, zero))


def _stack(state: State, node: torch.fx.Node, parts: list[Any], dim: int) -> None:
    values = [state.val(p) for p in parts]
    chans = [v for v in values if isinstance(v, Chan)]
    if not chans or any(v.dim != chans[0].dim for v in chans):
        _untracked_or_unknown(state, node)
        return
    cdim = chans[0].dim + (1 if dim <= chans[0].dim else 0)
    _couple_all(state, node, values, cdim)


def reduction(state: State, node: torch.fx.Node, name: str) -> None:
    """mean / sum / amax / ...: pins when reducing over channels, else passes through."""
    x, in_shape = _input(state, node)
    if x is None:
        _untracked_or_unknown(state, node)
        return
    nd = len(in_shape)
    if len(node.args) > 1 and isinstance(node.args[1], torch.fx.Node):
        from medprune.graph.rules import elementwise

        elementwise(state, node, name)
        return
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims = list(range(nd))
    if isinstance(dims, int):
        dims = [dims]
    if not all(isinstance(d, int) for d in dims):
        unknown(state, node)
        return
    dims = [_norm_dim(d, nd) for d in dims]
    if x.dim in dims:
        unknown(state, node, f"{name} over the channel dim mixes channels")
        return
    keep_pos = 3 if name in ("std", "var") else 2
    keepdim = (
        node.args[keep_pos] if len(node.args) > keep_pos else node.kwargs.get("keepdim", False)
    )
    keepdim = bool(keepdim)
    new = x.dim if keepdim else x.dim - sum(d < x.dim for d in dims)
    _set_outputs(state, node, lambda s: Chan(new, x.labels, x.zero))


def softmax(state: State, node: torch.fx.Node, name: str) -> None:
    """softmax / log_softmax: over channels pins, else passes through (not zero-preserving)."""
    x, in_shape = _input(state, node)
    if x is None:
        _untracked_or_unknown(state, node)
        return
    dim = _norm_dim(int(node.args[1]), len(in_shape))
    if dim == x.dim:
        unknown(state, node, f"{name} over the channel dim mixes channels")
        return
    state.set(node, Chan(x.dim, x.labels, np.zeros(x.labels.size, dtype=bool)))


SHAPE_RULES = {
    "pad": pad,
    "constant_pad_nd": pad,
    "view": reshape,
    "reshape": reshape,
    "_unsafe_view": reshape,
    "flatten": reshape,
    "unflatten": reshape,
    "squeeze": reshape,
    "unsqueeze": reshape,
    "permute": permute,
    "transpose": permute,
    "swapaxes": permute,
    "t": permute,
    "expand": expand,
    "repeat": repeat,
    "cat": cat,
    "concat": cat,
    "concatenate": cat,
    "stack": cat,
    **{n: reduction for n in ("mean", "sum", "amax", "amin", "std", "var", "prod", "max", "min")},
    **BLOCK_RULES,
    "softmax": softmax,
    "log_softmax": softmax,
    "_softmax": softmax,
    "_log_softmax": softmax,
}
