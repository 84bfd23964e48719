"""``hrank``: the average matrix rank of each channel's feature map (Lin et al., CVPR 2020)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medprune.criteria.base import check_choice, register_criterion
from medprune.criteria.streaming import StreamingCriterion
from medprune.graph.group import PruningGroup


def feature_map_ranks(y: torch.Tensor, *, method: str = "svd") -> torch.Tensor:
    """Matrix rank of every channel's ``(H, W)`` map: ``(B, C, H, W)`` -> ``(B, C)`` float.

    3D maps ``(B, C, D, H, W)``: the mean rank of the ``D`` slices. ``(B, C)`` / 1D maps: the rank
    of a ``1 x L`` matrix (1 when non-zero). ``method="svd"`` is ``torch.linalg.matrix_rank`` in
    float32 with its default tolerance (``sigma_max * max(H, W) * eps``); ``"gram"`` computes
    the same singular values as square roots of the eigenvalues of ``M^T M`` in float64 (an
    SVD-free alternative; equal ranks up to float32 rounding of near-threshold singular values,
    not faster on the CPUs measured so far).
    """
    b, c = y.shape[:2]
    if y.dim() == 2:
        y = y[:, :, None, None]
    elif y.dim() == 3:
        y = y[:, :, None, :]
    h, w = y.shape[-2:]
    mats = y.reshape(-1, h, w).float()  # (B*C*D, H, W)
    if method == "svd":
        ranks = torch.linalg.matrix_rank(mats).float()
    else:
        m64 = mats.double()
        gram = m64.mT @ m64 if h >= w else m64 @ m64.mT  # (N, k, k), k = min(H, W)
        sv = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()  # (N, k) ascending
        tol = sv[:, -1:] * max(h, w) * torch.finfo(torch.float32).eps
        ranks = (sv > tol).sum(1).float()
    return ranks.reshape(b, c, -1).mean(2)


@register_criterion("hrank")
class HRank(StreamingCriterion):
    """Mean over calibration images of the matrix rank of each channel's feature map.

    Tap point: the output of the group's norm layer when it has one (else the producer's output),
    passed through ``activation`` first. The reference taps after BN + ReLU, so
    ``activation="relu"`` (default) reproduces it for ReLU networks; use ``"none"`` to rank the
    raw norm output (e.g. for LeakyReLU / PReLU networks, where the sign pattern differs). The
    reference taps a ResNet block's second conv after the residual add; here every producer of a
    coupled group is tapped at its own norm and the members are combined (see
    :mod:`medprune.criteria.base`).

    Ranks are integers, so ties are common; ``tie_break="l1"`` adds the L1 norm of the filter,
    scaled below half the gap to the next distinct score (and below 0.1% of the largest score),
    so exactly equal scores are
    ordered by weight magnitude and no other order changes (the spec's recommendation);
    ``"none"`` keeps the raw mean ranks.

    Args:
        activation: ``"relu"`` or ``"none"``.
        method: ``"svd"`` (``torch.linalg.matrix_rank``, the reference) or ``"gram"``.
        tie_break: ``"l1"`` or ``"none"``.
        **kwargs: see :class:`~medprune.criteria.streaming.StreamingCriterion`.
    """

    def __init__(
        self,
        *,
        activation: Literal["relu", "none"] = "relu",
        method: Literal["svd", "gram"] = "svd",
        tie_break: Literal["l1", "none"] = "l1",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("activation", activation, ("relu", "none"))
        check_choice("method", method, ("svd", "gram"))
        check_choice("tie_break", tie_break, ("l1", "none"))
        self.activation = activation
        self.method = method
        self.tie_break = tie_break

    def observe(self, state: Any, module: nn.Module, x: Any, y: torch.Tensor) -> Any:
        if self.activation == "relu":
            y = F.relu(y)
        ranks = feature_map_ranks(y, method=self.method).sum(0).double()  # (C,)
        if state is None:
            return [ranks, y.shape[0]]
        state[0] += ranks
        state[1] += y.shape[0]
        return state

    def finalize(self, state: Any, module: nn.Module) -> torch.Tensor:
        return state[0] / state[1]

    def compute(
        self,
        groups: list[PruningGroup],
        model: nn.Module,
        calibration: Iterable[Any] | None,
        task: Any,
    ) -> dict[str, torch.Tensor]:
        scores = super().compute(groups, model, calibration, task)
        if self.tie_break == "l1":
            for g in groups:
                weights = [s.abs().sum(1) for s in g.out_weights()]
                if weights:
                    l1 = torch.stack(weights).mean(0)
                    scores[g.key] = break_ties(scores[g.key], l1)
        return scores


def break_ties(scores: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Order channels with equal ``scores`` ``(n,)`` by ``secondary`` without reordering others.

    A tied channel moves up by ``secondary / max(secondary)`` times a step smaller than half the
    gap to the next larger distinct score (and at most ``1e-3`` of the largest score).
    """
    s = scores.double()
    values = torch.unique(s)  # sorted ascending
    if values.numel() == s.numel():
        return scores
    gaps = values.diff()
    min_gap = float(gaps.min()) if gaps.numel() else 1.0
    next_gap = torch.cat([gaps, torch.tensor([min_gap], dtype=s.dtype)])  # (n_distinct,)
    pos = torch.searchsorted(values, s)
    frac = secondary.double() / secondary.double().abs().max().clamp_min(1e-12)
    cap = 1e-3 * float(s.abs().max().clamp_min(1e-12))
    step = (0.5 * next_gap[pos]).clamp(max=cap)
    return (s + step * frac).to(scores.dtype)
