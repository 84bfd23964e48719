"""Probing ops whose channel arithmetic the trace hides.

``torch.export`` records ``x.split(x.shape[1] // 2, dim=1)`` (MONAI's LocalNet / RegUNet
additive up-sampling) as ``split(x, 16, 1)``, exactly like a literal ``x.split(16, dim=1)``; and
MONAI's pixel shuffle ``x.reshape(B, C // 4, 2, 2, H, W)`` exactly like
``x.view(B, 8, 2, 2, H, W)``. Pruning through the first form is exact (the pieces shrink with the
channels), through the second it breaks the model. The propagation therefore records such ops as
:class:`~medprune.graph.propagate.Candidate` and pins them; this module decides which ones follow
the channel count, by asking the model's own code:

1. propagate again with every candidate coupled (equal pieces lose the same positions; a pixel
   shuffle loses whole blocks), build the groups on a deep copy of the model;
2. remove the last block of every prunable group of the copy and trace it again;
3. a candidate is confirmed when, in the new trace, its sizes are the same function of the new
   channel count (``C' / k`` pieces, blocks of ``k``). If the pruned copy cannot run or be traced,
   each candidate is probed on its own.

Cost: one extra propagation, one copy, one surgery and one ``torch.export`` per probe, paid only
by models that have such ops.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medprune.graph.export import ExportedGraph, export_model
from medprune.graph.grouping import make_groups
from medprune.graph.propagate import Candidate, candidate_key, out_shape, propagate
from medprune.graph.rules_blocks import channel_block_size, equal_split_count, slice_piece

__all__ = ["confirm_candidates"]

log = logging.getLogger(__name__)

#: When the joint probe fails, each candidate is probed alone, at most this many (one export each).
MAX_SINGLE_PROBES = 6


def confirm_candidates(
    model: nn.Module,
    args: tuple[Any, ...],
    exported: ExportedGraph,
    candidates: Mapping[str, Candidate],
    ignore: frozenset[str],
) -> frozenset[Candidate]:
    """The candidates whose sizes follow the channel count (see the module doc)."""
    every = frozenset(candidates.values())
    together = _probe(model, args, exported, ignore, every)
    if together is not None:
        return together
    if len(every) > MAX_SINGLE_PROBES:  # bound the cost: pin them all
        log.info("%d candidate splits failed together; not probing them one by one", len(every))
        return frozenset()
    confirmed: set[Candidate] = set()
    for cand in sorted(every, key=lambda c: c.key):
        alone = _probe(model, args, exported, ignore, frozenset({cand}))
        confirmed |= alone or set()
    return frozenset(confirmed)


def _probe(
    model: nn.Module,
    args: tuple[Any, ...],
    exported: ExportedGraph,
    ignore: frozenset[str],
    trial: frozenset[Candidate],
) -> frozenset[Candidate] | None:
    """The confirmed part of ``trial``; None when the pruned copy fails to run or to trace."""
    from medprune.graph.pruning_graph import PruningGraph
    from medprune.graph.surgery import prune_channels

    try:
        work = copy.deepcopy(model)
    except Exception as e:  # noqa: BLE001 - e.g. non-leaf tensors kept as attributes
        log.warning(
            "cannot copy %s to probe its splits (%s); they stay pinned", type(model).__name__, e
        )
        return frozenset()
    state = propagate(exported, ignore, accept=trial)
    graph = PruningGraph(work, make_groups(state, work), [], args, exported.output_shapes)
    plan = {
        g.key: torch.arange(g.n_channels - g.channel_multiple, g.n_channels)
        for g in graph.prunable_groups()
    }
    if not plan:
        return frozenset()
    try:
        prune_channels(work, graph, plan)
        probe = export_model(work, args)
    except Exception as e:  # noqa: BLE001 - any failure means "not all of trial hold"
        log.debug("probe of %s failed: %s", sorted(c.key for c in trial), e)
        return None
    nodes = {candidate_key(n): n for n in probe.graph.nodes if n.op == "call_function"}
    return frozenset(c for c in trial if _follows(c, nodes.get(c.key)))


def _follows(cand: Candidate, node: torch.fx.Node | None) -> bool:
    """Whether ``node`` (the candidate in the pruned copy's trace) scaled with the channels."""
    if node is None or not isinstance(node.args[0], torch.fx.Node):
        return False
    in_shape = out_shape(node.args[0])
    if in_shape is None or len(in_shape) <= cand.dim:
        return False
    channels = in_shape[cand.dim]
    if channels >= cand.channels:
        return False  # the probe did not shrink this input: nothing learned
    if cand.kind == "equal_split":
        return equal_split_count(node, channels) == cand.k
    if cand.kind == "equal_slice":
        return slice_piece(node, channels) == (cand.k, cand.index)
    shape = out_shape(node)
    if shape is None or channels % cand.k:
        return False
    return any(
        shape[dp] == channels // cand.k
        and channel_block_size(channels, in_shape, cand.dim, shape, dp) == cand.k
        for dp in range(cand.dim, len(shape))
    )
