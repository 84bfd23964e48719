"""Propagation rules for ops that cut or move whole *blocks* of channels: slicing and splitting,
pixel (un)shuffle and channel shuffle.

Each of these keeps the model correct after pruning only if every block loses the same
positions, so the rule couples positions instead of pinning them:

- ``chunk(k)`` / ``tensor_split(k)``: channel ``j`` of every piece is one removable channel (a
  GLU gate ``a, b = x.chunk(2, 1)`` prunes ``a_j`` with ``b_j``). The pieces are cut at ``C / k``
  of the run-time ``C``, so the split stays right after pruning.
- ``pixel_shuffle(r)``: output channel ``j`` is built from the ``r**2`` input channels
  ``j*r*r ..``; those are coupled into one removable channel.
- ``pixel_unshuffle(r)``: input channel ``c`` becomes ``r**2`` consecutive output channels, which
  carry ``c``'s label (copies, like ``repeat``).
- ``channel_shuffle(g)``: a permutation of ``g`` groups of ``n`` channels; position ``i`` of every
  group is coupled so that ``n`` shrinks evenly.

Every one of these ops fixes one side of the block layout in its arguments (the block size ``r``,
the piece or group count ``k`` / ``g``) and derives the other from the run-time channel count, so
the coupling above is exact. ``split(x, s)`` and a reshape that splits the channel dim (MONAI's
``SubpixelUpsample`` does ``x.reshape(B, C // r**d, r, .., *S)``) show only integers in the trace:
the same couplings apply to them once :mod:`medprune.graph.probe` has confirmed, on a pruned copy,
that the code derives those integers from the channel count. A ``slice`` / ``narrow`` that keeps
one of ``k`` equal pieces (``x[:, :h]``, ``x[:, h:]`` with ``h = C // 2``) is probed the same way.

Other slices, ``select``, ``unbind`` and unequal splits along channels pin their channels and
are reported (a slice that keeps the whole channel dim passes through). Along any other dim these
ops pass the channel labels through.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from medprune.graph.propagate import Candidate, Chan, State, candidate_key, meta_shapes, out_shape
from medprune.graph.rules import _set_outputs, _untracked_or_unknown, base_name, unknown

__all__ = [
    "BLOCK_RULES",
    "channel_block_size",
    "equal_pieces",
    "equal_split_count",
    "keep_piece",
    "merge_blocks",
    "slice_piece",
]


def _couple_columns(state: State, blocks: np.ndarray) -> None:
    """Couple every column of ``blocks`` (shape ``(n, k)``) with its first column."""
    for i in range(1, blocks.shape[1]):
        state.couple(blocks[:, 0], blocks[:, i])


def equal_pieces(state: State, node: torch.fx.Node, x: Chan, sections: int | None = None) -> bool:
    """chunk(k) / tensor_split(k) (or a probed ``split``) along the channel dim into ``k`` equal
    pieces; ``sections`` defaults to the op's second argument.

    Returns False (the caller pins) when the pieces are not ``k`` equal parts of the channels.
    """
    if sections is None:
        sections = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
    shapes = meta_shapes(node)
    c = x.labels.size
    if not isinstance(sections, int) or sections < 1 or c % sections:
        return False
    size = c // sections
    if len(shapes) != sections or any(s is None or s[x.dim] != size for s in shapes):
        return False
    labels = x.labels.reshape(sections, size)
    zeros = x.zero.reshape(sections, size)
    _couple_columns(state, labels.T)
    state.set(node, [Chan(x.dim, labels[i].copy(), zeros[i].copy()) for i in range(sections)])
    return True


def equal_split_count(node: torch.fx.Node, channels: int) -> int | None:
    """``k`` when ``split(x, s)`` / ``split_with_sizes(x, [s] * k)`` cuts ``channels`` into
    ``k >= 2`` equal pieces; None otherwise."""
    size = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size")
    if isinstance(size, int) and size > 0 and channels % size == 0 and channels // size >= 2:
        return channels // size
    if isinstance(size, (list, tuple)) and len(size) >= 2 and len(set(size)) == 1:
        if isinstance(size[0], int) and size[0] * len(size) == channels:
            return len(size)
    return None


def slice_piece(node: torch.fx.Node, channels: int) -> tuple[int, int] | None:
    """``(k, i)`` when ``slice`` / ``narrow`` along channels keeps piece ``i`` of ``k >= 2``
    equal pieces of ``channels`` (``x[:, :h]``, ``x[:, h:]``, ``x.narrow(1, h, h)``); else None."""
    if base_name(node) == "narrow":
        start, length = node.args[2], node.args[3]
        if not (isinstance(start, int) and isinstance(length, int)):
            return None
        end, step = start + length, 1
    else:
        start = node.args[2] if len(node.args) > 2 else 0
        end = node.args[3] if len(node.args) > 3 else channels
        step = node.args[4] if len(node.args) > 4 else 1
        if not all(isinstance(v, int) for v in (start, end, step)):
            return None
    start = start + channels if start < 0 else start
    end = min(end + channels if end < 0 else end, channels)
    size = end - start
    if step != 1 or size <= 0 or size >= channels or channels % size or start % size:
        return None
    return channels // size, start // size


def keep_piece(state: State, x: Chan, k: int, index: int) -> Chan:
    """Couple position ``j`` of all ``k`` pieces of ``x``; the channel value of piece ``index``."""
    labels = x.labels.reshape(k, -1)
    _couple_columns(state, labels.T)
    return Chan(x.dim, labels[index].copy(), x.zero.reshape(k, -1)[index].copy())


def channel_block_size(
    channels: int, in_shape: tuple[int, ...], dim: int, shape: tuple[int, ...], dp: int
) -> int | None:
    """``k = r**d`` when a reshape turns ``(.., C, *S)`` with ``d`` spatial dims into
    ``(.., C / k, r, .., r, *S)`` (``d`` sub-pixel factors: MONAI's pixel shuffle); None otherwise
    (e.g. attention heads ``(B, N, 3, heads, dim)`` or ``x.view(B, groups, C // groups, H, W)``).
    """
    new_c = shape[dp]
    spatial = tuple(in_shape[dim + 1 :])
    factors = tuple(shape[dp + 1 : dp + 1 + len(spatial)])
    if new_c < 1 or channels % new_c or new_c == channels or not spatial:
        return None
    if len(set(factors)) != 1 or factors[0] < 2 or math.prod(factors) * new_c != channels:
        return None
    if tuple(shape[dp + 1 + len(spatial) :]) != spatial:
        return None
    return channels // new_c


def merge_blocks(state: State, x: Chan, k: int, dim: int) -> Chan:
    """Channels in consecutive blocks of ``k`` become one channel each (labels coupled)."""
    blocks = x.labels.reshape(-1, k)
    _couple_columns(state, blocks)
    return Chan(dim, blocks[:, 0].copy(), x.zero.reshape(-1, k).all(axis=1))


def _channel_input(state: State, node: torch.fx.Node) -> tuple[Chan | None, tuple[int, ...]]:
    x = state.val(node.args[0])
    shape = out_shape(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    if isinstance(x, Chan) and shape is not None and x.dim == len(shape) - 3:
        return x, shape  # (*, C, H, W): the op's channel dim is the tracked one
    return None, ()


def pixel_shuffle(state: State, node: torch.fx.Node, name: str) -> None:
    """pixel_shuffle(r): ``(*, C*r*r, H, W) -> (*, C, H*r, W*r)``, each block of ``r*r`` input
    channels becomes one channel; pixel_unshuffle(r): the inverse, channel ``c`` -> ``r*r``
    copies of its label."""
    x, _ = _channel_input(state, node)
    if x is None:
        _untracked_or_unknown(state, node)
        return
    k = int(node.args[1]) ** 2
    if name == "pixel_unshuffle":
        state.set(node, Chan(x.dim, np.repeat(x.labels, k), np.repeat(x.zero, k)))
    elif x.labels.size % k:
        unknown(state, node, f"{name} of {x.labels.size} channels by {k}")
    else:
        state.set(node, merge_blocks(state, x, k, x.dim))


def channel_shuffle(state: State, node: torch.fx.Node, name: str) -> None:
    """channel_shuffle(g): ``(g, n)`` channels read out as ``(n, g)``; position ``i`` of every
    group is coupled so every group keeps the same size."""
    x = state.val(node.args[0])
    shape = out_shape(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    groups = int(node.args[1])
    if not isinstance(x, Chan) or shape is None or x.dim != 1 or x.labels.size % groups:
        unknown(state, node, f"{name} whose channel dim is not dim 1 or not divisible by groups")
        return
    n = x.labels.size // groups
    table = x.labels.reshape(groups, n)
    _couple_columns(state, table.T)
    state.set(node, Chan(1, table.T.reshape(-1).copy(), x.zero.reshape(groups, n).T.reshape(-1)))


def _input(state: State, node: torch.fx.Node) -> tuple[Chan | None, tuple[int, ...]]:
    x = state.val(node.args[0])
    shape = out_shape(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    if isinstance(x, Chan) and shape is not None:
        return x, shape
    return None, ()


def _norm_dim(d: int, nd: int) -> int:
    return d + nd if d < 0 else d


EQUAL_PIECES = ("chunk", "unsafe_chunk", "tensor_split")


def slicing(state: State, node: torch.fx.Node, name: str) -> None:
    """slice / select / narrow / split / chunk / unbind (see the module doc for channels)."""
    x, in_shape = _input(state, node)
    if x is None:
        _untracked_or_unknown(state, node)
        return
    nd = len(in_shape)
    dim_pos = 1
    dim = node.args[dim_pos] if len(node.args) > dim_pos else node.kwargs.get("dim", 0)
    if name in ("split", "split_with_sizes", "unsafe_split", *EQUAL_PIECES):
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    dim = _norm_dim(int(dim), nd)
    shapes = meta_shapes(node)
    if dim == x.dim:
        if name == "slice" and shapes[0] is not None and shapes[0][dim] == in_shape[dim]:
            state.set(node, Chan(x.dim, x.labels, x.zero))
            return
        if name in EQUAL_PIECES and equal_pieces(state, node, x):
            return
        piece = slice_piece(node, x.labels.size) if name in ("slice", "narrow") else None
        if piece is not None:
            k, i = piece
            cand = Candidate(candidate_key(node), "equal_slice", x.labels.size, k, x.dim, i)
            state.candidates[cand.key] = cand
            if cand in state.accept:
                state.set(node, keep_piece(state, x, k, i))
                return
            unknown(state, node, _unconfirmed(state, f"{name} of piece {i} of {k} along channels"))
            return
        k = equal_split_count(node, x.labels.size) if name in SPLITS else None
        if k is not None:
            cand = Candidate(candidate_key(node), "equal_split", x.labels.size, k, x.dim)
            state.candidates[cand.key] = cand
            if cand in state.accept and equal_pieces(state, node, x, sections=k):
                return
            unknown(state, node, _unconfirmed(state, f"{name} along channels into {k} pieces"))
            return
        unknown(
            state,
            node,
            f"{name} along channels: its bounds are integers in the traced graph "
            "(a literal or x.shape-derived; the trace cannot tell), so the sliced channels are kept",
        )
        return
    removes_dim = name in ("select", "unbind")
    new = x.dim - 1 if removes_dim and dim < x.dim else x.dim
    _set_outputs(state, node, lambda s: Chan(new, x.labels, x.zero))


SPLITS = ("split", "split_with_sizes", "unsafe_split")


def _unconfirmed(state: State, what: str) -> str:
    if state.probed:
        return (
            f"{what}: in a pruned probe copy its sizes did not follow the channel count "
            "(fixed in the model's code), so the channels are kept"
        )
    return f"{what}: sizes fixed in the trace; not probed"


BLOCK_RULES = {
    "pixel_shuffle": pixel_shuffle,
    "pixel_unshuffle": pixel_shuffle,
    "channel_shuffle": channel_shuffle,
    "native_channel_shuffle": channel_shuffle,
    **{n: slicing for n in ("slice", "select", "narrow", "unbind", *SPLITS, *EQUAL_PIECES)},
}
