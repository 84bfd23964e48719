"""Channel masks for soft pruning: choosing channels, zeroing them, masking their gradients.

A *selection* is ``{group_key: prune_idx}`` with ``prune_idx`` an int64 tensor of group channels.
Masking goes through :meth:`medprune.graph.PruningGraph.zero_out`, which zeroes every slice that
makes the channel's output exactly zero (producer weights and bias, norm affine parameters), so
that physically removing masked channels afterwards leaves the network's function unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from medprune.errors import ConfigError
from medprune.graph.group import ChannelSlice, PruningGroup
from medprune.methods.base import Target

Selection = dict[str, torch.Tensor]


def select(
    graph: Any,
    scores: Mapping[str, torch.Tensor],
    target: Target,
    *,
    min_channels: int = 1,
    scope: str = "uniform",
    plan_options: Mapping[str, Any] | None = None,
) -> Selection:
    """Channels to prune for ``target`` via :func:`medprune.methods.plan.plan_pruning`.

    ``scope="uniform"`` (SFP / FPGM's per-layer rate) removes the same fraction of every group:
    ``Target(ratio=r)`` directly, ``Target(macs=...)`` / ``Target(params=...)`` with the fraction
    found by bisection; ``scope="global"`` ranks all channels together.
    """
    from medprune.methods.plan import plan_pruning

    chosen = plan_pruning(
        graph, dict(scores), target, min_channels=min_channels, scope=scope, **(plan_options or {})
    )
    return {k: torch.as_tensor(v, dtype=torch.long) for k, v in chosen.items() if len(v)}


MaskScope = str  # "producer" | "channel"
MASK_SCOPES = ("producer", "channel")


def apply_selection(
    graph: Any, selection: Mapping[str, torch.Tensor], *, scope: MaskScope = "channel"
) -> None:
    """Zero the selected channels in place.

    ``scope="channel"``: :meth:`PruningGraph.zero_out` (producer weights and bias, norm affine and
    statistics): the channel outputs exactly zero. ``scope="producer"``: only the producers'
    filters and biases (SFP's mask): a following norm still emits its shift ``beta``, so gradients
    keep flowing and the channel can recover.
    """
    for key, idx in selection.items():
        group = graph.group(key)
        if scope == "channel":
            graph.zero_out(group, idx)
            continue
        with torch.no_grad():
            for s in group.members("out"):
                t = group.tensor(s)
                t.index_fill_(s.dim, s.positions(idx).to(t.device), 0.0)


def _param_slices(group: PruningGroup, scope: MaskScope) -> list[ChannelSlice]:
    """Parameter slices carrying the group's own channels: producers only, or producers and norms."""
    roles = ("out",) if scope == "producer" else ("out", "per_channel")
    return [
        s
        for s in group.slices
        if s.role in roles and isinstance(group.tensor(s), torch.nn.Parameter)
    ]


def mask_gradients(
    graph: Any, selection: Mapping[str, torch.Tensor], *, scope: MaskScope = "producer"
) -> None:
    """Zero the gradients of the selected channels' parameters (FPGM's code: producers only)."""
    for key, idx in selection.items():
        group = graph.group(key)
        for s in _param_slices(group, scope):
            grad = group.tensor(s).grad
            if grad is not None:
                grad.index_fill_(s.dim, s.positions(idx).to(grad.device), 0.0)


def reset_optimizer_state(
    graph: Any,
    optimizer: torch.optim.Optimizer | None,
    selection: Mapping[str, torch.Tensor],
    *,
    scope: MaskScope = "producer",
) -> None:
    """Zero momentum / Adam moments of the selected channels so masked weights stay at zero.

    Every state tensor shaped like its parameter is cleared at the channel positions; scalar
    entries (Adam's ``step``) are kept.
    """
    if optimizer is None:
        return
    for key, idx in selection.items():
        group = graph.group(key)
        for s in _param_slices(group, scope):
            param = group.tensor(s)
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.index_fill_(s.dim, s.positions(idx).to(value.device), 0.0)


def masked_fraction(graph: Any, selection: Mapping[str, torch.Tensor]) -> float:
    """Fraction of the prunable groups' channels that are selected."""
    total = sum(g.n_channels for g in graph.prunable_groups())
    chosen = sum(int(v.numel()) for v in selection.values())
    return chosen / total if total else 0.0


def parse_criterion(spec: str) -> tuple[str, dict[str, Any]]:
    """``"fpgm:cos"`` -> ``("fpgm", {"distance": "cos"})``; ``"l2"`` -> ``("l2", {})``."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            f"criterion spec must be a non-empty string like 'l2' or 'fpgm:cos'; got {spec!r}."
        )
    name, _, arg = spec.partition(":")
    if not arg:
        return name, {}
    if name != "fpgm":
        raise ConfigError(
            f"only 'fpgm' takes a distance suffix ('fpgm:l2', 'fpgm:l1', 'fpgm:cos'); got {spec!r}."
        )
    return name, {"distance": arg}


def make_criterion(spec: str) -> Any:
    """A :class:`medprune.criteria.Criterion` from a spec string (see :func:`parse_criterion`)."""
    from medprune.criteria import get_criterion

    name, kwargs = parse_criterion(spec)
    return get_criterion(name, **kwargs)
