"""``bn_scale``: the magnitude of the per-channel norm scale ``|gamma|`` (network slimming)."""

from __future__ import annotations

import logging
from typing import Literal

import torch

from medprune.criteria.base import Criterion, check_choice, producer_weights, register_criterion
from medprune.errors import ConfigError
from medprune.graph.group import PruningGroup

logger = logging.getLogger(__name__)


@register_criterion("bn_scale")
class BNScale(Criterion):
    """``|gamma|`` of the affine per-channel norm layer(s) of the group (BN, affine IN, GN).

    Groups without an affine norm (MONAI's default ``InstanceNorm(affine=False)``, convs without a
    norm) have no gamma. ``fallback`` decides what happens then:

    * ``"l1"`` (default): score those groups with the L1 norm of their filters and log it once per
      call. Scores of such groups are on another scale; global plans normalise per group, so the
      ranking inside each group stays meaningful.
    * ``"error"``: raise :class:`~medprune.errors.ConfigError` naming the group.

    Args:
        fallback: ``"l1"`` or ``"error"``.
    """

    def __init__(self, *, fallback: Literal["l1", "error"] = "l1", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        check_choice("fallback", fallback, ("l1", "error"))
        self.fallback = fallback

    def member_scores(self, group: PruningGroup) -> list[torch.Tensor]:
        gammas = group.norm_weights()
        if gammas:
            return [g.abs() for g in gammas]
        if self.fallback == "error":
            raise ConfigError(
                f"bn_scale: group {group.key!r} has no affine norm layer (no gamma to read); "
                "pass fallback='l1', ignore the group, or choose another criterion."
            )
        logger.info("bn_scale: group %r has no affine norm; using the L1 filter norm", group.key)
        return [w.abs().sum(1) for _, w in producer_weights(group, self.name)]
