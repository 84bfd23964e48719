"""Physical channel removal: slice parameters, buffers and optimizer state in place.

``prune_channels(model, graph, {group_key: prune_idx})`` removes the given group channels from
every tensor of each group (weights, biases, running statistics, PReLU slopes, ...), replaces
each parameter by a new ``nn.Parameter`` (``requires_grad`` kept), slices the matching optimizer
state (SGD ``momentum_buffer``, Adam ``exp_avg`` / ``exp_avg_sq`` / ``max_exp_avg_sq``) and
re-points the optimizer's ``param_groups``, updates module attributes through
:mod:`medprune.graph.handlers`, then runs one forward to check output shapes (on the first
sample of a batched example input, falling back to the whole input when that does not settle it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from medprune.errors import ConfigError, ShapeMismatchError
from medprune.graph.grouping import removal_table
from medprune.graph.handlers import ModuleChange, snapshot, update_module
from medprune.graph.pruning_graph import PruningGraph

__all__ = ["PruningStep", "prune_channels"]


@dataclass(frozen=True)
class PruningStep:
    """What one call of :func:`prune_channels` removed.

    Attributes:
        removed: group key -> sorted removed group channels (the plan step, JSON-ready).
        params_before: parameter count before.
        params_after: parameter count after.
        tensors: dotted names of the sliced parameters and buffers.
    """

    removed: dict[str, list[int]]
    params_before: int
    params_after: int
    tensors: tuple[str, ...] = field(default=())


def _validate(graph: PruningGraph, prune: Mapping[str, Any]) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for key, value in prune.items():
        group = graph.group(key)
        idx = np.unique(np.asarray(torch.as_tensor(value).reshape(-1).tolist(), dtype=np.int64))
        if idx.size == 0:
            continue
        if not group.prunable:
            raise ConfigError(
                f"group {key!r} is pinned ({group.pinned_reason}); it cannot be pruned."
            )
        if idx.min() < 0 or idx.max() >= group.n_channels:
            raise ConfigError(
                f"group {key!r} has {group.n_channels} channels; got indices outside "
                f"0..{group.n_channels - 1} (min {idx.min()}, max {idx.max()})."
            )
        m = group.channel_multiple
        if m > 1:
            blocks, counts = np.unique(idx // m, return_counts=True)
            if (counts != m).any():
                raise ConfigError(
                    f"group {key!r} can only lose whole blocks of {m} channels (GroupNorm groups); "
                    f"blocks {blocks[counts != m].tolist()} are partial. Use group.channel_blocks()."
                )
        if group.n_channels - idx.size < group.min_channels:
            raise ConfigError(
                f"group {key!r} must keep at least {group.min_channels} of {group.n_channels} "
                f"channels; asked to remove {idx.size}."
            )
        out[graph.index_of(key)] = idx
    return out


def _slice(t: torch.Tensor, keeps: list[tuple[int, np.ndarray]]) -> torch.Tensor:
    """A new tensor with only the ``keep`` positions of each ``dim`` (never a view of ``t``)."""
    out = t.detach()
    if not keeps:
        return out.clone()
    for dim, keep in keeps:  # index_select allocates a new tensor: no clone needed
        out = out.index_select(dim, torch.from_numpy(keep).to(t.device))
    return out


def _replace(module: nn.Module, name: str, keeps: list[tuple[int, np.ndarray]]) -> tuple[Any, Any]:
    old = getattr(module, name)
    new_data = _slice(old, keeps)
    if isinstance(old, nn.Parameter):
        new = nn.Parameter(new_data, requires_grad=old.requires_grad)
        setattr(module, name, new)
    else:
        new = new_data
        module._buffers[name] = new
    return old, new


def _slice_optimizer(
    optimizer: torch.optim.Optimizer, swaps: list[tuple[Any, Any, list[tuple[int, np.ndarray]]]]
) -> None:
    for old, new, keeps in swaps:
        if not isinstance(old, nn.Parameter):
            continue
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        state = optimizer.state.pop(old, None)
        if state is None:
            continue
        for k, v in list(state.items()):
            if isinstance(v, torch.Tensor) and v.shape == old.shape:
                state[k] = _slice(v, keeps)
        optimizer.state[new] = state


def _single_sample(
    inputs: tuple[Any, ...], output_shapes: list[tuple[int, ...]]
) -> tuple[tuple[Any, ...], list[tuple[int, ...]]] | None:
    """The first sample of a batched example input and the output shapes expected for it.

    Only when every tensor input and every traced output share one leading batch size ``B > 1``;
    otherwise None (the check then runs on the full example input).
    """
    tensors = [a for a in inputs if isinstance(a, torch.Tensor)]
    if not tensors or not output_shapes or any(t.dim() == 0 for t in tensors):
        return None
    batch = int(tensors[0].shape[0])
    if batch <= 1 or any(int(t.shape[0]) != batch for t in tensors):
        return None
    if any(len(s) == 0 or s[0] != batch for s in output_shapes):
        return None
    one = tuple(a[:1] if isinstance(a, torch.Tensor) else a for a in inputs)
    return one, [(1, *s[1:]) for s in output_shapes]


def _output_shapes(model: nn.Module, inputs: tuple[Any, ...]) -> list[tuple[int, ...]]:
    """Output tensor shapes of one eval-mode, no-grad forward (the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [tuple(t.shape) for t in _tensors(model(*inputs))]
    finally:
        model.train(was_training)


def _check_forward(model: nn.Module, graph: PruningGraph) -> None:
    """Run the pruned model and compare its output shapes with the traced ones.

    A batched example input is first checked on its first sample alone (cheaper; shapes must
    match the traced ones with batch 1). Anything else -- a failure or a different shape at
    batch 1, or an input that is not simply batched -- falls back to the full example input,
    which alone decides (and reports) an error.
    """
    single = _single_sample(graph.example_inputs, list(graph.output_shapes))
    if single is not None:
        try:
            if _output_shapes(model, single[0]) == single[1]:
                return
        except Exception:  # noqa: BLE001 - the full-batch check below decides and reports
            pass
    try:
        shapes_a = _output_shapes(model, graph.example_inputs)
    except Exception as e:
        raise ShapeMismatchError(
            f"{graph.model_class} no longer runs after pruning ({type(e).__name__}: {e}). "
            "A shape is fixed in the model's code where the engine cannot see it; add the "
            "module to ignore=[...] and report the model."
        ) from e
    shapes_b = list(graph.output_shapes)
    if shapes_a != shapes_b:
        raise ShapeMismatchError(
            f"{graph.model_class}: output shapes changed by pruning: {shapes_b} -> {shapes_a}."
        )


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [t for v in value for t in _tensors(v)]
    return []


def prune_channels(
    model: nn.Module,
    graph: PruningGraph,
    prune: Mapping[str, torch.Tensor | Sequence[int]],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    check: bool = True,
) -> PruningStep:
    """Physically remove group channels from ``model`` (in place).

    Args:
        model: the model ``graph`` was built from.
        graph: its :class:`PruningGraph`; stale afterwards (rebuild it for the next step).
        prune: group key -> group channels to remove ``(m,)``.
        optimizer: optimizer holding the model's parameters; its state is sliced to match.
        check: run one forward on the example input and compare output shapes.

    Returns:
        The :class:`PruningStep` (its ``removed`` is the plan step).

    Raises:
        ConfigError: unknown / pinned group, bad indices, partial GroupNorm blocks.
        ShapeMismatchError: the pruned model no longer runs (never on supported models).
    """
    if graph.model is not model:
        raise ConfigError("prune_channels: graph was built from another model object.")
    plan = _validate(graph, prune)
    params_before = sum(p.numel() for p in model.parameters())
    table = removal_table([g.n_channels for g in graph.groups], plan)
    per_tensor: dict[str, list[tuple[int, np.ndarray]]] = {}
    for (fqn, dim), pm in graph._grouping.tensor_maps.items():
        mask = pm.removed(*table)
        if mask.any():
            per_tensor.setdefault(fqn, []).append((dim, np.nonzero(~mask)[0]))
    module_counts: dict[str, int] = {}
    touched = {fqn.rpartition(".")[0] for fqn in per_tensor}
    for path, _, pm in graph._grouping.module_maps:
        mask = pm.removed(*table)
        module_counts[path] = int((~mask).sum())
        if mask.any():
            touched.add(path)
    modules = dict(model.named_modules(remove_duplicate=False))
    old_attrs = {name: snapshot(modules[name]) for name in touched if name in modules}
    swaps = []
    for fqn, keeps in per_tensor.items():
        module_name, _, tensor_name = fqn.rpartition(".")
        module = modules.get(module_name)
        if module is None:
            module = model.get_submodule(module_name)  # raises the usual error
        old, new = _replace(module, tensor_name, keeps)
        swaps.append((old, new, keeps))
    for name, attrs in old_attrs.items():
        update_module(modules[name], ModuleChange(attrs, module_counts.get(name)))
    if optimizer is not None:
        _slice_optimizer(optimizer, swaps)
    graph.stale = True
    if check:
        _check_forward(model, graph)
    removed = {graph.groups[g].key: idx.tolist() for g, idx in sorted(plan.items())}
    return PruningStep(
        removed=removed,
        params_before=params_before,
        params_after=sum(p.numel() for p in model.parameters()),
        tensors=tuple(sorted(per_tensor)),
    )
