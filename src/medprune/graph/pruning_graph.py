"""``build_graph`` and :class:`PruningGraph`: the groups of a traced model, masks and cost estimates."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medprune.errors import ConfigError, TraceError
from medprune.graph.export import (
    ExportedGraph,
    as_input_tuple,
    export_model,
    module_path,
    train_batch,
)
from medprune.graph.group import PruningGroup
from medprune.graph.grouping import Grouping, PositionMap, make_groups
from medprune.graph.probe import confirm_candidates
from medprune.graph.propagate import propagate

__all__ = ["Cost", "PruningGraph", "build_graph"]

log = logging.getLogger(__name__)

#: Tensors ``zero_out`` leaves alone: zeroing them is not needed for a zero output.
_KEEP_ON_ZERO = ("running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Cost:
    """Analytic cost of the model for the traced example input (batch included)."""

    macs: int
    params: int


class _Term:
    """``base * prod(kept_i / size_i)`` over labelled dims, with per-group position counts."""

    def __init__(self, base: float, maps: Sequence[PositionMap], sizes: Sequence[int]) -> None:
        self.base = base
        self.dims = []
        for pm in maps:
            counts: dict[int, float] = {}
            per_group = np.bincount(pm.group[pm.group >= 0])
            for g in np.flatnonzero(per_group).tolist():
                c = int(per_group[g])
                counts[g] = c / sizes[g] if sizes[g] else 0.0
            self.dims.append((pm.group.size, counts))

    def value(self, removed: Mapping[int, int]) -> float:
        out = self.base
        for size, counts in self.dims:
            if size == 0:
                continue
            kept = size - sum(r * counts.get(g, 0.0) for g, r in removed.items())
            out *= max(kept, 0.0) / size
        return out


class PruningGraph:
    """The channel groups of one model, traced once.

    Attributes:
        model: the traced model (tensors are read live from it).
        groups: every :class:`PruningGroup`, prunable or pinned, in graph order.
        pinned: ``(op or module, reason)`` for every op or module that pins channels.
        probed: ``(op, kind, confirmed)`` for every split / slice / reshape whose sizes were
            checked on a pruned copy (:mod:`medprune.graph.probe`); confirmed ones are pruned
            through.
        example_inputs: the example inputs used for tracing.
        model_class: class name of the model.
    """

    def __init__(
        self,
        model: nn.Module,
        grouping: Grouping,
        pinned: list[tuple[str, str]],
        example_inputs: tuple[Any, ...],
        output_shapes: list[tuple[int, ...]],
    ) -> None:
        self.model = model
        self.groups: list[PruningGroup] = [g.bind(model) for g in grouping.groups]
        self.pinned = pinned
        self.example_inputs = example_inputs
        self.output_shapes = output_shapes
        self.model_class = type(model).__name__
        self.stale = False
        self.probed: list[tuple[str, str, bool]] = []  # (op key, kind, follows the channels)
        self.trace_digest = ""  # what the traced forward computes (see trace_digest())
        self._grouping = grouping
        self._index = {g.key: i for i, g in enumerate(self.groups)}
        sizes = [g.n_channels for g in self.groups]
        self._mac_terms = [_Term(b, maps, sizes) for b, maps in grouping.cost_maps]
        self._fixed_macs: float | None = None  # MACs of ops without channel terms, on first use
        self._param_terms, self._fixed_params = self._params(sizes)

    def _params(self, sizes: list[int]) -> tuple[list[_Term], int]:
        by_fqn: dict[str, list[PositionMap]] = {}
        for (fqn, _), pm in self._grouping.tensor_maps.items():
            by_fqn.setdefault(fqn, []).append(pm)
        terms, fixed = [], 0
        for name, p in self.model.named_parameters():
            if name in by_fqn:
                terms.append(_Term(float(p.numel()), by_fqn[name], sizes))
            else:
                fixed += p.numel()
        return terms, fixed

    # ---- lookup -------------------------------------------------------------------------
    def prunable_groups(self) -> list[PruningGroup]:
        """Groups that may lose channels (at least one block more than ``min_channels``)."""
        return [g for g in self.groups if g.prunable and g.n_channels > g.min_channels]

    def group(self, key: str) -> PruningGroup:
        """The group with this key; :class:`ConfigError` with a suggestion when unknown."""
        self._check_fresh()
        i = self._index.get(key)
        if i is None:
            close = difflib.get_close_matches(key, list(self._index), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"Unknown group {key!r} for {self.model_class}.{hint} "
                f"See graph.groups ({len(self.groups)} groups)."
            )
        return self.groups[i]

    def group_of(self, module: str | nn.Module) -> list[PruningGroup]:
        """Groups whose channels are produced by ``module`` (a dotted name or the module)."""
        self._check_fresh()
        if isinstance(module, nn.Module):
            names = [n for n, m in self.model.named_modules(remove_duplicate=False) if m is module]
        else:
            names = [module]
        return [g for g in self.groups if any(s.module_name in names for s in g.members("out"))]

    def index_of(self, key: str) -> int:
        """Position of the group ``key`` in :attr:`groups`."""
        self.group(key)
        return self._index[key]

    # ---- masks --------------------------------------------------------------------------
    def zero_out(
        self, group: PruningGroup | str, channel_idx: torch.Tensor | Iterable[int]
    ) -> None:
        """Write zeros so that the group's channels ``channel_idx`` output exactly zero.

        Zeroes the producers' filters and biases (``role="out"``) and every per-channel tensor
        (norm affine parameters and ``running_mean``, PReLU slopes). With ``group.zero_exact``
        each consumer then sees zeros through zero-preserving ops (see :mod:`medprune.graph.rules`).
        Consumer input weights (``role="in"``) are untouched.

        Args:
            group: the group or its key.
            channel_idx: group channels ``(m,)`` in ``0 .. n_channels-1``.
        """
        self._check_fresh()
        g = self.group(group) if isinstance(group, str) else group
        idx = torch.as_tensor(
            list(channel_idx) if not isinstance(channel_idx, torch.Tensor) else channel_idx
        )
        idx = idx.to(torch.int64).reshape(-1)
        if idx.numel() == 0:
            return
        with torch.no_grad():
            for s in g.slices:
                if s.role == "in" or s.tensor_name in _KEEP_ON_ZERO:
                    continue
                t = g.tensor(s)
                if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                    continue
                t.index_fill_(s.dim, s.positions(idx).to(t.device), 0.0)

    # ---- costs --------------------------------------------------------------------------
    def estimate(
        self, removed: Mapping[str, int | torch.Tensor | Sequence[int]] | None = None
    ) -> Cost:
        """MACs and parameters after removing channels, without re-tracing.

        Args:
            removed: group key -> number of removed channels or their indices.

        Returns:
            ``Cost(macs, params)`` for the traced example input; exact for conv, transposed conv,
            linear and norm parameters (other MACs, e.g. attention matmuls, stay constant).
        """
        counts: dict[int, int] = {}
        for key, value in (removed or {}).items():
            n = int(value) if isinstance(value, int) else len(value)
            if n:
                counts[self.index_of(key)] = n
        macs = self._fixed() + sum(t.value(counts) for t in self._mac_terms)
        params = self._fixed_params + sum(t.value(counts) for t in self._param_terms)
        return Cost(macs=int(round(macs)), params=int(round(params)))

    def _fixed(self) -> float:
        if self._fixed_macs is None:
            self._check_fresh()
            traced = sum(t.base for t in self._mac_terms)
            self._fixed_macs = max(total_macs(self.model, self.example_inputs) - traced, 0)
        return self._fixed_macs

    # ---- internals ----------------------------------------------------------------------
    def _check_fresh(self) -> None:
        if self.stale:
            raise ConfigError(
                "this PruningGraph is stale: its model was pruned; call build_graph(model, "
                "example_inputs) again."
            )

    def __repr__(self) -> str:
        n_prunable = len(self.prunable_groups())
        return (
            f"PruningGraph({self.model_class}, groups={len(self.groups)}, "
            f"prunable={n_prunable}, pinned_ops={len(self.pinned)})"
        )


def _module_names(model: nn.Module, ignore: Iterable[Any]) -> frozenset[str]:
    names = set()
    by_id = {id(m): n for n, m in model.named_modules()}
    for item in ignore:
        if isinstance(item, str):
            names.update(n for n in by_id.values() if n == item or n.startswith(item + "."))
        elif isinstance(item, nn.Module):
            root = by_id.get(id(item))
            if root is None:
                raise ConfigError(f"ignore: module {type(item).__name__} is not part of the model.")
            names.update(n for n in by_id.values() if n == root or n.startswith(root + "."))
        elif isinstance(item, type):
            names.update(n for n, m in model.named_modules() if isinstance(m, item))
        else:
            raise ConfigError(
                f"ignore entries must be module names, modules or types; got {item!r}."
            )
    return frozenset(names)


def total_macs(model: nn.Module, args: tuple[Any, ...]) -> int:
    """MACs of one eval forward counted by ``torch.utils.flop_counter`` (FLOPs / 2)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args)
        return int(counter.get_total_flops()) // 2
    except Exception as e:  # noqa: BLE001 - fall back to the traced producers only
        log.warning("FLOP counting failed (%s); estimates cover conv/linear only", e)
        return 0
    finally:
        model.train(was_training)


def build_graph(
    model: nn.Module, example_inputs: Any, *, ignore: Iterable[Any] = ()
) -> PruningGraph:
    """Trace ``model`` once and group its channels.

    Args:
        model: the network (any ``nn.Module`` that ``torch.export`` can trace).
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of the model's inputs.
        ignore: modules (names, instances or types) whose channels must never be pruned.

    Returns:
        The :class:`PruningGraph`.

    Raises:
        TraceError: the model could not be traced.
        ShapeMismatchError: the inputs are too small for the model's downsampling (the message
            names the smallest size that runs).
    """
    args = as_input_tuple(example_inputs)
    exported = export_model(model, args, check_size=True)
    ignored = _module_names(model, ignore)
    state = propagate(exported, ignored)
    probed: list[tuple[str, str, bool]] = []
    if state.candidates:  # splits / reshapes whose sizes may or may not follow the channels
        accepted = confirm_candidates(model, args, exported, state.candidates, ignored)
        probed = [(c.key, c.kind, c in accepted) for c in state.candidates.values()]
        state = propagate(exported, ignored, accept=accepted)
    _add_train_only_branches(model, args, exported, state, ignored)
    grouping = make_groups(state, model)
    pinned = sorted(state.pinned_ops.items())
    graph = PruningGraph(model, grouping, pinned, args, exported.output_shapes)
    graph.probed = probed
    graph.trace_digest = trace_digest(exported)
    return graph


def trace_digest(exported: ExportedGraph) -> str:
    """SHA-256 (hex, 32 chars) of the traced ops, their parameters and output shapes: equal for
    two models whose forward computes the same thing at the same input shapes, different when
    ``forward`` changes even though the modules (and ``repr(model)``) stay the same."""
    import hashlib

    lines = []
    for node in exported.graph.nodes:
        val = node.meta.get("val")
        shape = tuple(val.shape) if isinstance(val, torch.Tensor) else None
        target = exported.tensor_names.get(node.name, node.target)
        lines.append(f"{node.op} {target} {shape} {len(node.args)}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]


def _untraced_parameters(model: nn.Module, exported: ExportedGraph) -> list[str]:
    """Parameters the traced forward never reads (export lifts every parameter as a graph
    input, so an unused one is a placeholder without users)."""
    used = {
        exported.tensor_names[n.name]
        for n in exported.graph.nodes
        if n.op == "placeholder" and n.users and n.name in exported.tensor_names
    }
    return [n for n, _ in model.named_parameters() if n not in used]


_LAYER_OPS = ("conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "linear")  # fmt: skip


def _unused_layer_outputs(exported: ExportedGraph) -> list[str]:
    """Module paths of conv / linear layers whose output nothing reads in the traced forward:
    a result kept for training only (DynUNet stores its deep-supervision heads in a list)."""
    from medprune.graph.rules import base_name

    return [
        module_path(n) or "<root>"
        for n in exported.graph.nodes
        if n.op == "call_function" and not n.users and base_name(n) in _LAYER_OPS
    ]


def _add_train_only_branches(
    model: nn.Module,
    args: tuple[Any, ...],
    exported: ExportedGraph,
    state: Any,
    ignored: frozenset[str],
) -> None:
    """Trace the train-mode forward too when the eval trace leaves parameters unused or computes
    layer outputs that nothing reads.

    VAE branches (SegResNetVAE) only run in training, and deep-supervision heads (DynUNet) are
    computed in eval but only returned in training; their channels must follow the train-mode
    data flow, or the pruned model fails as soon as it is fine-tuned. Their couplings are added
    to ``state``. The train trace uses a batch of at least 2 (BatchNorm needs more than one value
    per channel). When it fails, the modules it would have covered are reported in
    ``state.pinned_ops`` and a warning is logged.

    Parameters that no mode uses (UNETR's ``norm_cross_attn``) also trigger the second trace;
    it then finds nothing new and only costs time.
    """
    missing = _untraced_parameters(model, exported)
    dead = _unused_layer_outputs(exported)
    if not missing and not dead:
        return
    train_args = train_batch(args)
    modules = sorted({n.rpartition(".")[0] or "<root>" for n in missing} | set(dead))
    try:
        train_exported = export_model(model, train_args, train=True)
    except TraceError as e:
        log.warning(
            "%s uses parameters of %s only in train mode, and the train-mode trace failed (%s); "
            "the pruned model may fail in train mode. Add those modules' inputs to ignore=[...].",
            type(model).__name__,
            ", ".join(modules[:5]),
            e,
        )
        state.pinned_ops.setdefault(
            "train-mode trace", f"failed; modules used only in training: {', '.join(modules[:5])}"
        )
        return
    propagate(train_exported, ignored, into=state)  # confirmed candidates must match exactly
