"""``beta_rank``: β-Rank (Homayounfar et al., arXiv 2304.07461), a filter's L1 mass scaled by
the spread of its output over the spread of its input across images."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medprune.criteria.base import check_choice, register_criterion
from medprune.criteria.streaming import StreamingCriterion

logger = logging.getLogger(__name__)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class RunningMoments:
    """Per-element mean and sum of squared deviations over images, merged batch by batch.

    Chan et al.'s parallel update in float32 (numerically stable without float64 copies of the
    feature maps). ``x`` ``(b, *E)`` -> ``mean``, ``m2`` ``(*E)``; population variance ``m2 / n``.
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.n = 0
        self.mean = torch.zeros(x.shape[1:], dtype=torch.float32, device=x.device)
        self.m2 = torch.zeros_like(self.mean)
        self.update(x)

    def update(self, x: torch.Tensor) -> None:
        nb = x.shape[0]
        if nb == 0:
            return
        flat = x.detach().float().reshape(nb, -1)  # (b, prod(E)); faster than var_mean(dim=0)
        bmean = flat.mean(0)
        bm2 = (flat - bmean).square_().sum(0).view_as(self.m2)
        delta = bmean.view_as(self.mean).sub_(self.mean)  # (*E)
        total = self.n + nb
        self.m2.add_(bm2).addcmul_(delta, delta, value=self.n * nb / total)
        self.mean.add_(delta, alpha=nb / total)
        self.n = total

    def var(self) -> torch.Tensor:
        return self.m2 / self.n


def input_patch_spread(module: nn.Module, var_in: torch.Tensor, c_out: int) -> torch.Tensor:
    """RMS over a receptive field of the across-image std of the module's input, per output.

    ``var_in`` ``(C_in, *S_in)`` per-element variance of the input over images. For a conv
    (grouped, strided, dilated, 1/2/3D) output position ``p`` of channel ``o`` sees the input
    elements of its receptive field in ``o``'s channel group; the result is
    ``sqrt(mean over those elements of var_in)`` (padding excluded), computed for all positions at
    once with a ones-kernel convolution (a summed ``unfold``). Transposed convs use the transposed
    pattern; linear layers and other modules use all input elements.

    Returns:
        ``(C_out, *S_out)`` or ``(C_out, 1)`` spreads.
    """
    if isinstance(module, _CONV + _CONVT):
        g = module.groups
        nd = var_in.dim() - 1
        k = module.kernel_size
        v = var_in.reshape(g, var_in.shape[0] // g, *var_in.shape[1:]).sum(1)[None]  # (1, g, *S)
        ones = var_in.new_ones(g, 1, *k)
        kw: dict[str, Any] = {"stride": module.stride, "dilation": module.dilation, "groups": g}
        if isinstance(module, _CONV):
            conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
            kw["padding"] = module.padding
        else:
            conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
            kw.update(padding=module.padding, output_padding=module.output_padding)
        total = conv(v, ones, **kw)[0]  # (g, *S_out): summed variance per receptive field
        count = conv(torch.ones_like(v), ones, **kw)[0] * (var_in.shape[0] // g)
        spread = (total / count.clamp_min(1)).clamp_min(0).sqrt()
        spread = torch.where(count > 0, spread, torch.zeros_like(spread))
        return spread.repeat_interleave(c_out // g, dim=0)  # (C_out, *S_out)
    return var_in.mean().clamp_min(0).sqrt().expand(c_out, 1)


def filter_l1(module: nn.Module, c_out: int) -> torch.Tensor:
    """L1 mass of each output filter ``(C_out,)`` (conv, transposed conv, linear)."""
    w = module.weight.detach().abs()
    if isinstance(module, _CONVT):
        g = module.groups
        per = w.flatten(2).sum(2)  # (C_in, C_out/g)
        return per.reshape(g, -1, per.shape[1]).sum(1).reshape(-1)
    return w.reshape(c_out, -1).sum(1)


@register_criterion("beta_rank")
class BetaRank(StreamingCriterion):
    """β-Rank: ``score_k = L1(W_k) * mean_p sigma_out(k, p) / sigma_in(p)``.

    Tapped at each producer (conv / transposed conv / linear) on its input ``X`` and its output
    ``Y`` *before* the norm layer, over all calibration images (streamed: per-element running
    moments, memory independent of the number of images):

    * ``sigma_out(k, p)``: population std over images of ``Y[:, k, p]``;
    * ``sigma_in(p)``: spread of the input patch that output position ``p`` sees, across images:
      ``sqrt`` of the mean over the receptive-field elements of their across-image variance
      (the README's patch deviation, normalised by the patch size);
    * positions where the denominator is (numerically) zero are skipped; a filter with no usable
      position gets ratio 0 (zero-spread guard; the reference code has none and produces inf/NaN).

    Differences from the reference code, each a parameter (defaults = the clean version):

    * ``ratio="out_over_in"`` is what the code computes (and what produced the published numbers);
      ``"in_over_out"`` is the README equation (a standardised regression coefficient).
    * The patch is the true receptive field. The reference slices channels with the row offset
      and ignores padding (quirk Q1); that mix-up is not reproduced.
    * ``weight_norm="l1"`` (sum of ``|W_k|``) or ``"l1_mean"`` (the reference's mean; a per-layer
      constant that only matters across layers).
    * ``position_reduce="mean"`` (comparable across resolutions) or ``"sum"`` (the reference).
    * ``normalize="none"`` or ``"minmax"`` (the reference min-max-normalises each layer to [0, 1]).
    * Statistics use every calibration image, not only the last batch (quirk Q3).

    Args:
        ratio: ``"out_over_in"`` or ``"in_over_out"``.
        weight_norm: ``"l1"`` or ``"l1_mean"``.
        position_reduce: ``"mean"`` or ``"sum"``.
        normalize: ``"none"`` or ``"minmax"``.
        eps: relative threshold below which a spread counts as zero.
        **kwargs: see :class:`~medprune.criteria.streaming.StreamingCriterion`.
    """

    prefer_site = "producer"

    def __init__(
        self,
        *,
        ratio: Literal["out_over_in", "in_over_out"] = "out_over_in",
        weight_norm: Literal["l1", "l1_mean"] = "l1",
        position_reduce: Literal["mean", "sum"] = "mean",
        normalize: Literal["none", "minmax"] = "none",
        eps: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("ratio", ratio, ("out_over_in", "in_over_out"))
        check_choice("weight_norm", weight_norm, ("l1", "l1_mean"))
        check_choice("position_reduce", position_reduce, ("mean", "sum"))
        check_choice("normalize", normalize, ("none", "minmax"))
        self.ratio = ratio
        self.weight_norm = weight_norm
        self.position_reduce = position_reduce
        self.normalize = normalize
        self.eps = float(eps)

    def observe(self, state: Any, module: nn.Module, x: Any, y: torch.Tensor) -> Any:
        if x is None:
            raise TypeError(f"beta_rank needs the tensor input of {type(module).__name__}.")
        if state is None:
            return [RunningMoments(x), RunningMoments(y)]
        state[0].update(x)
        state[1].update(y)
        return state

    def finalize(self, state: Any, module: nn.Module) -> torch.Tensor:
        mom_in, mom_out = state
        var_out = mom_out.var()  # (C_out, *S_out)
        c_out = var_out.shape[0]
        sigma_out = var_out.clamp_min(0).sqrt().reshape(c_out, -1)  # (C_out, P)
        sigma_in = input_patch_spread(module, mom_in.var(), c_out).reshape(c_out, -1)
        if sigma_in.shape[1] != sigma_out.shape[1]:
            sigma_in = sigma_in.mean(1, keepdim=True).expand_as(sigma_out)
        if self.ratio == "out_over_in":
            num, den = sigma_out, sigma_in
        else:
            num, den = sigma_in, sigma_out
        floor = self.eps * den.amax().clamp_min(1e-30)
        valid = den > floor  # (C_out, P)
        ratio = torch.where(valid, num / den.clamp_min(1e-30), torch.zeros_like(num))
        if self.position_reduce == "sum":
            beta = ratio.sum(1)
        else:
            beta = ratio.sum(1) / valid.sum(1).clamp_min(1)
        if not valid.any():
            logger.warning("beta_rank: no input spread at %s; scores fall back to L1", module)
            beta = torch.ones_like(beta)
        l1 = filter_l1(module, c_out)
        if self.weight_norm == "l1_mean":
            l1 = l1 / (module.weight.numel() // c_out)
        score = l1.double() * beta.double()
        if self.normalize == "minmax":
            lo, hi = score.min(), score.max()
            score = (score - lo) / (hi - lo) if hi > lo else torch.zeros_like(score)
        return score
