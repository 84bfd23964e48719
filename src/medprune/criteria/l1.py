"""``l1``: the L1 norm of each producer's filters (Li et al., ICLR 2017)."""

from __future__ import annotations

import torch

from medprune.criteria.base import Criterion, producer_weights, register_criterion
from medprune.graph.group import PruningGroup


@register_criterion("l1")
class L1(Criterion):
    """Sum of absolute weights of each output filter: ``W (n, fan) -> sum_j |W[i, j]|``.

    A coupled group (several producers) combines the per-producer norms as documented in
    :mod:`medprune.criteria.base`. The reference β-Rank L1 arm (``H_out*W_out*mean|W|``) ranks
    identically within a layer.
    """

    def member_scores(self, group: PruningGroup) -> list[torch.Tensor]:
        return [w.abs().sum(1) for _, w in producer_weights(group, self.name)]  # each (n,)
