"""Importance criteria: ``{group.key: scores (n_channels,)}``, higher = more important.

Weight-only: ``l1``, ``l2``, ``fpgm``, ``bn_scale``, ``random``. Data-driven (one streaming pass
over calibration batches, optional class-aware statistics): ``hrank``, ``beta_rank``, ``taylor``,
``taylor_gn``. Add one with a new module that subclasses :class:`Criterion` and decorates it with
``@register_criterion("name")``, plus an import line below.
"""

from __future__ import annotations

from medprune.criteria import beta_rank as beta_rank
from medprune.criteria import bn_scale as bn_scale
from medprune.criteria import fpgm as fpgm
from medprune.criteria import hrank as hrank
from medprune.criteria import l1 as l1
from medprune.criteria import l2 as l2
from medprune.criteria import random as random
from medprune.criteria import taylor as taylor
from medprune.criteria import taylor_gn as taylor_gn
from medprune.criteria.base import (
    Criterion,
    combine_members,
    get_criterion,
    list_criteria,
    register_criterion,
)
from medprune.criteria.streaming import StreamingCriterion

__all__ = [
    "Criterion",
    "StreamingCriterion",
    "combine_members",
    "get_criterion",
    "list_criteria",
    "register_criterion",
]
