"""Plans and schedules: which channels go, and the methods that alternate pruning and training.

Re-exports the method nouns of :mod:`medprune.methods.base`, :func:`plan_pruning`, the schedule
registry and :func:`prune`, and imports every method module so that it registers itself.
"""

from __future__ import annotations

from medprune.methods import guard as guard
from medprune.methods import iterative as iterative
from medprune.methods import lottery as lottery
from medprune.methods import mfp as mfp
from medprune.methods import oneshot as oneshot
from medprune.methods import sauron as sauron
from medprune.methods import soft as soft
from medprune.methods.api import prune
from medprune.methods.base import (
    MethodContext,
    PruneResult,
    Target,
    get_method,
    list_methods,
    register_method,
)
from medprune.methods.plan import plan_pruning
from medprune.methods.schedules import get_schedule, list_schedules, register_schedule

__all__ = [
    "MethodContext",
    "PruneResult",
    "Target",
    "get_method",
    "get_schedule",
    "list_methods",
    "list_schedules",
    "plan_pruning",
    "prune",
    "register_method",
    "register_schedule",
]
