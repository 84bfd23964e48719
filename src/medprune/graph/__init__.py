"""medprune.graph: the structural pruning engine.

Trace once with ``torch.export`` (:func:`build_graph`), read the coupled channel groups
(:class:`PruningGroup`), then remove channels physically (:func:`prune_channels`) or replay a
saved :class:`PruningPlan` (:func:`apply_plan`).
"""

from medprune.graph.group import ActivationSite, ChannelSlice, PruningGroup
from medprune.graph.handlers import register_handler
from medprune.graph.plan import PruningPlan, apply_plan
from medprune.graph.pruning_graph import Cost, PruningGraph, build_graph
from medprune.graph.surgery import PruningStep, prune_channels

__all__ = [
    "ActivationSite",
    "ChannelSlice",
    "Cost",
    "PruningGraph",
    "PruningGroup",
    "PruningPlan",
    "PruningStep",
    "apply_plan",
    "build_graph",
    "prune_channels",
    "register_handler",
]
