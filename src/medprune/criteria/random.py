"""``random``: seeded uniform scores, the baseline every criterion must beat."""

from __future__ import annotations

import zlib

import torch

from medprune.criteria.base import Criterion, register_criterion
from medprune.graph.group import PruningGroup


@register_criterion("random")
class Random(Criterion):
    """Uniform ``[0, 1)`` scores, reproducible per group.

    The generator of each group is seeded with ``seed`` and a CRC of the group key, so a group's
    scores do not depend on which other groups exist or on their order.

    Args:
        seed: base seed.
    """

    def __init__(self, *, seed: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.seed = int(seed)

    def member_scores(self, group: PruningGroup) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(group.key.encode()))
        return [torch.rand(group.n_channels, generator=gen)]
