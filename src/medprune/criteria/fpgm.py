"""``fpgm``: filter pruning via geometric median (He et al., CVPR 2019), with the norm+distance mix."""

from __future__ import annotations

from typing import Literal

import torch

from medprune.criteria.base import Criterion, check_choice, producer_weights, register_criterion
from medprune.errors import ConfigError
from medprune.graph.group import PruningGroup

Distance = Literal["l2", "l1", "cos"]


def distance_sums(w: torch.Tensor, distance: Distance = "l2") -> torch.Tensor:
    """``g(F_k) = sum_j d(F_k, F_j)`` for filters ``w`` ``(n, fan)`` -> ``(n,)``.

    ``"l2"`` / ``"l1"``: Minkowski distances between flattened filters; ``"cos"``: cosine
    distance ``1 - <F_k, F_j> / (|F_k| |F_j|)`` (zero filters count as orthogonal to all others).
    Computed in float64.
    """
    w = w.double()
    if distance == "cos":
        unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n, fan)
        d = 1.0 - unit @ unit.T  # (n, n)
        d.fill_diagonal_(0.0)
    else:
        d = torch.cdist(w[None], w[None], p=2.0 if distance == "l2" else 1.0)[0]  # (n, n)
    return d.sum(1)


@register_criterion("fpgm")
class FPGM(Criterion):
    """Sum of distances of each filter to the other filters of the same layer.

    Filters near the layer's geometric median (small distance sum) are the most replaceable, so
    they score lowest. Coupled groups combine per-producer scores (see
    :mod:`medprune.criteria.base`).

    FPGM-mix (``norm_fraction > 0``): the ``norm_fraction`` of each producer's filters with the
    smallest ``norm_p`` norm rank below every other filter (their score is ``norm / max_norm`` in
    ``[0, 1)``), and the remaining filters are ranked by their distance sum *among the remaining
    filters*, mapped to ``[1, 2]``. Pruning ``norm_fraction + r`` of a layer then reproduces the
    reference "norm step, then GM step". With ``norm_fraction = 0`` (default) the score is the plain
    distance sum.

    Args:
        distance: ``"l2"`` (paper default), ``"l1"`` or ``"cos"``.
        norm_fraction: fraction of filters selected by the norm step of FPGM-mix, in ``[0, 1)``.
        norm_p: norm of the mix's norm step (2 as in SFP).
    """

    def __init__(
        self,
        *,
        distance: Distance = "l2",
        norm_fraction: float = 0.0,
        norm_p: float = 2.0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        check_choice("distance", distance, ("l2", "l1", "cos"))
        if not 0.0 <= float(norm_fraction) < 1.0:
            raise ConfigError(f"norm_fraction must be in [0, 1); got {norm_fraction!r}.")
        self.distance: Distance = distance
        self.norm_fraction = float(norm_fraction)
        self.norm_p = float(norm_p)

    def member_scores(self, group: PruningGroup) -> list[torch.Tensor]:
        return [self._score(w) for _, w in producer_weights(group, self.name)]

    def _score(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        n_norm = int(self.norm_fraction * n)
        if n_norm == 0:
            return distance_sums(w, self.distance).float()
        norms = w.double().norm(p=self.norm_p, dim=1)  # (n,)
        order = torch.sort(norms, stable=True).indices
        small, large = order[:n_norm], order[n_norm:]
        scores = torch.empty(n, dtype=torch.float64)
        scores[small] = norms[small] / norms.max().clamp_min(1e-12) * 0.999
        d = distance_sums(w[large], self.distance)  # distances among the large-norm filters
        scores[large] = 1.0 + d / d.max().clamp_min(1e-12)
        return scores.float()
