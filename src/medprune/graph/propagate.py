"""Channel propagation over the traced graph: a union-find over individual channels.

Every channel position of every tracked tensor carries an integer *label*. Producers (conv,
linear) take their output labels from the ``dim 0`` positions of their weight; per-channel layers
and pass-through ops forward their input's labels; couplings (residual add, SE gating) record
that two label arrays must be removed together. At the end the labels are merged into connected
components (:func:`scipy.sparse.csgraph.connected_components`): one component is one *removable
channel*, and a parameter dimension loses exactly the positions whose labels fall in a removed
component. Repeats, channel padding and concatenations of copies are therefore handled exactly:
a component may own several positions of one tensor.

Labels are *pinned* (never removed) when they touch the model's inputs or outputs, an op without a
rule, or a module listed in ``ignore``.

Each tracked tensor also carries a ``zero`` flag per channel: True when zeroing the channel's
component (:meth:`PruningGraph.zero_out`) makes that position exactly zero. A component is
*zero-exact* when every consumer (conv / linear input) sees zeros, so zeroing then removing it
leaves the output unchanged.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medprune.graph.export import ExportedGraph, module_path

__all__ = ["Candidate", "Chan", "ParamRef", "Untracked", "State", "candidate_key", "propagate"]


@dataclass
class Chan:
    """Channel information of one tracked tensor: ``labels[i]`` is channel ``i`` along ``dim``."""

    dim: int
    labels: np.ndarray
    zero: np.ndarray


@dataclass(frozen=True)
class ParamRef:
    """A parameter or buffer placeholder, by dotted name."""

    fqn: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Untracked:
    """A tensor without channel labels (constants, shapes); ``bcast`` marks an expand of size 1."""

    shape: tuple[int, ...]
    bcast: bool = False


@dataclass(frozen=True)
class Candidate:
    """An op along channels whose sizes are integers in the trace (``split(x, 16)``,
    ``x.reshape(B, C // 4, 2, 2, H, W)``): exact to prune through only if the model's code
    derives them from the channel count. :mod:`medprune.graph.probe` checks that on a copy.

    Attributes:
        key: ``"node_name@module.path"``, the same in a re-trace of a pruned copy.
        kind: ``"equal_split"`` (``k`` equal pieces), ``"equal_slice"`` (piece ``index`` of
            ``k`` equal pieces: ``x[:, h:]`` with ``h = C // 2``) or ``"channel_blocks"``
            (blocks of ``k``).
        channels: the channel count of the op's input.
        k: pieces (equal_split, equal_slice) or block size (channel_blocks).
        dim: the input's channel dim.
        index: which piece an ``equal_slice`` keeps.
    """

    key: str
    kind: str
    channels: int
    k: int
    dim: int
    index: int = 0


@dataclass
class TensorDim:
    """Labels of one parameter / buffer dimension and its role (out, in, per_channel)."""

    fqn: str
    dim: int
    role: str
    labels: np.ndarray


@dataclass
class State:
    """Mutable state of one propagation run."""

    exported: ExportedGraph
    ignore: frozenset[str] = frozenset()
    n_labels: int = 0
    edges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pins: list[tuple[np.ndarray, str]] = field(default_factory=list)
    pinned_ops: dict[str, str] = field(default_factory=dict)
    tensor_dims: dict[tuple[str, int], TensorDim] = field(default_factory=dict)
    consumers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    gn_blocks: list[tuple[str, np.ndarray, int]] = field(default_factory=list)
    module_dims: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    costs: list[tuple[int, tuple[tuple[str, int], ...]]] = field(default_factory=list)
    fixed_macs: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    current: torch.fx.Node | None = None
    guessed: set[int] = field(default_factory=set)  # first label of each fresh_chan output
    # ops whose channel arithmetic the trace cannot see (see medprune.graph.probe)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    accept: frozenset[Candidate] = frozenset()
    probed: bool = False

    # ---- labels -------------------------------------------------------------------------
    def new(self, n: int) -> np.ndarray:
        """``n`` fresh labels."""
        out = np.arange(self.n_labels, self.n_labels + n, dtype=np.int64)
        self.n_labels += n
        return out

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        """Positions ``a[i]`` and ``b[i]`` must be removed together."""
        if a.shape != b.shape:
            raise ValueError(f"cannot couple {a.shape} with {b.shape}")
        if a.size and not np.array_equal(a, b):
            self.edges.append((a, b))

    def pin(self, labels: np.ndarray, reason: str, *, report: bool = True) -> None:
        """Never remove these labels; ``reason`` names the op and module."""
        if labels.size:
            self.pins.append((labels, reason))
        if report:
            self.pinned_ops.setdefault(self.where(), reason)

    def where(self, node: torch.fx.Node | None = None) -> str:
        """``"aten.op @ module.path"`` of the node being processed."""
        node = node or self.current
        if node is None:
            return "<graph>"
        path = module_path(node) or "<root>"
        return f"{op_name(node)} @ {path}"

    # ---- parameters ---------------------------------------------------------------------
    def tensor_dim(self, fqn: str, dim: int, role: str, size: int) -> np.ndarray:
        """Labels of dimension ``dim`` of parameter / buffer ``fqn`` (allocated on first use)."""
        key = (fqn, dim)
        found = self.tensor_dims.get(key)
        if found is None:
            found = TensorDim(fqn, dim, role, self.new(size))
            self.tensor_dims[key] = found
            if fqn.rpartition(".")[0] in self.ignore:
                self.pin(
                    found.labels, f"module {fqn.rpartition('.')[0]!r} is in ignore", report=False
                )
                self.pinned_ops.setdefault(fqn.rpartition(".")[0], "listed in ignore")
        return found.labels

    def pin_param(self, ref: ParamRef, reason: str) -> None:
        """Pin every dimension of a parameter used by an op without a parameter-aware rule."""
        for d, size in enumerate(ref.shape):
            if size > 1:
                self.pin(self.tensor_dim(ref.fqn, d, "per_channel", size), reason)

    # ---- values -------------------------------------------------------------------------
    def val(self, arg: Any) -> Any:
        """The propagation value of an argument (node -> Chan / ParamRef / Untracked / None)."""
        if isinstance(arg, torch.fx.Node):
            return self.values.get(arg.name)
        if isinstance(arg, (list, tuple)):
            return [self.val(a) for a in arg]
        return None

    def set(self, node: torch.fx.Node, value: Any) -> None:
        self.values[node.name] = value


def candidate_key(node: torch.fx.Node) -> str:
    """``"split_1@decode_deconvs.0"``: FX names ops in graph order, so a re-trace of a pruned
    copy (same code path) gives the same key."""
    return f"{node.name}@{module_path(node) or '<root>'}"


def op_name(node: torch.fx.Node) -> str:
    """``"aten.conv2d"`` for an OpOverload target, the function name otherwise."""
    target = node.target
    packet = getattr(target, "_overloadpacket", None)
    if packet is not None:
        ns = getattr(target, "namespace", "aten")
        return f"{ns}.{packet.__name__}"
    return getattr(target, "__name__", str(target))


def out_shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    """Static shape of the node's tensor value, or None."""
    v = node.meta.get("val")
    if isinstance(v, torch.Tensor):
        try:
            return tuple(int(s) for s in v.shape)
        except TypeError:
            return None
    return None


def meta_shapes(node: torch.fx.Node) -> list[tuple[int, ...] | None]:
    """Shapes of a tuple-valued node's outputs."""
    v = node.meta.get("val")
    if isinstance(v, (list, tuple)):
        return [tuple(int(s) for s in t.shape) if isinstance(t, torch.Tensor) else None for t in v]
    return [out_shape(node)]


def fresh_chan(state: State, shape: tuple[int, ...], reason: str) -> Chan | Untracked:
    """A pinned channel value for an op output we cannot follow."""
    if len(shape) == 0:
        return Untracked(shape)
    dim = 1 if len(shape) >= 2 else 0
    labels = state.new(shape[dim])
    state.pin(labels, reason, report=False)
    if labels.size:
        state.guessed.add(int(labels[0]))  # its channel dim is a guess (see rules_layers.linear)
    return Chan(dim, labels, np.zeros(shape[dim], dtype=bool))


def propagate(
    exported: ExportedGraph,
    ignore: frozenset[str],
    *,
    into: State | None = None,
    accept: frozenset[Candidate] | None = None,
) -> State:
    """Run every op rule over the graph; returns the filled state.

    Args:
        exported: the traced graph.
        ignore: module names whose channels are pinned.
        into: a state filled from another trace of the same model (the train-mode trace that
            covers modules the eval forward skips). Its labels, couplings, pins and GroupNorm
            constraints are extended; the MACs terms and activation sites of this trace are
            dropped, since cost and sites describe the eval forward.
        accept: the :class:`Candidate` ops a probe confirmed (coupled instead of pinned; an op
            of another trace is accepted only if it is the equal candidate: same node name,
            module, kind and sizes); None = not probed yet (every candidate pins).
    """
    from medprune.graph.rules import apply_rule

    state = into if into is not None else State(exported=exported, ignore=ignore)
    if accept is not None:
        state.accept, state.probed = accept, True
    n_costs, n_sites = len(state.costs), len(state.module_dims)
    state.values = {}
    _run_rules(state, exported, apply_rule)
    if into is not None:
        del state.costs[n_costs:]
        del state.module_dims[n_sites:]
    return state


def _run_rules(state: State, exported: ExportedGraph, apply_rule: Any) -> None:
    user_inputs = set(exported.user_inputs)
    for node in exported.graph.nodes:
        state.current = node
        if node.op == "placeholder":
            shape = out_shape(node)
            fqn = exported.tensor_names.get(node.name)
            if shape is None:
                state.set(node, None)
            elif fqn is not None:
                state.set(node, ParamRef(fqn, shape))
            elif node.name in user_inputs:
                value = fresh_chan(state, shape, "model input")
                state.set(node, value)
                if isinstance(value, Chan):
                    state.pinned_ops.setdefault(f"input {node.name}", "the data's channels")
            else:
                state.set(node, Untracked(shape))
        elif node.op == "call_function":
            if node.target is operator.getitem:
                src = state.val(node.args[0])
                idx = node.args[1]
                state.set(node, src[idx] if isinstance(src, (list, tuple)) else None)
            else:
                apply_rule(state, node)
        elif node.op == "get_attr":
            shape = out_shape(node)
            state.set(node, Untracked(shape) if shape is not None else None)
        elif node.op == "output":
            for value in _flatten(state.val(node.args[0])):
                if isinstance(value, Chan):
                    state.pin(value.labels, "model output (classes / labels)", report=False)
                    state.consumers.append((value.labels, value.zero))
    state.current = None


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flatten(v)]
    return [value]
