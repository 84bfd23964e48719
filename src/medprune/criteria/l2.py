"""``l2``: the L2 norm of each producer's filters (the SFP criterion)."""

from __future__ import annotations

import torch

from medprune.criteria.base import Criterion, producer_weights, register_criterion
from medprune.graph.group import PruningGroup


@register_criterion("l2")
class L2(Criterion):
    """Euclidean norm of each output filter: ``W (n, fan) -> sqrt(sum_j W[i, j]^2)``."""

    def member_scores(self, group: PruningGroup) -> list[torch.Tensor]:
        return [w.double().norm(dim=1).float() for _, w in producer_weights(group, self.name)]
