"""``taylor``: first-order Taylor importance of a channel gate (Molchanov et al., CVPR 2019)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from medprune.criteria.base import check_choice, register_criterion
from medprune.criteria.streaming import StreamingCriterion, loss_for, spatial_sum


@register_criterion("taylor")
class Taylor(StreamingCriterion):
    """Taylor-FO-BN: the squared first-order loss change of removing each channel.

    A virtual gate ``z_k = 1`` multiplies channel ``k`` of the group's norm-layer output (site
    kind ``"norm"``, the Taylor-FO-BN variant) or, without a norm, of the producer's output. Its
    gradient is ``dL/dz_k = sum_{n, s} a[n, k, s] * dL/da[n, k, s]``, read with hooks on the
    activation and its gradient. ``L`` is ``task.loss(outputs, targets)`` when a task is given,
    else cross-entropy (per pixel for segmentation outputs), averaged over the batch.

    ``aggregation``:

    * ``"batch_sq"`` (Molchanov, default): ``(dL/dz_k)^2`` per batch, averaged over batches;
    * ``"per_example_sq"`` (the "FG" variant) / ``"per_example_abs"``: square / absolute value of
      each example's contribution (computed with the batch-mean loss and rescaled by the batch
      size, i.e. the gradient of that example's own loss), averaged over examples.

    With ``class_aware=True`` the batch sum is taken per class bucket and rescaled to the bucket's
    own mean loss (``B / b`` times the bucket sum), so a rare class present with one image per
    batch is not shrunk by its size.

    Args:
        aggregation: ``"batch_sq"``, ``"per_example_sq"`` or ``"per_example_abs"``.
        **kwargs: see :class:`~medprune.criteria.streaming.StreamingCriterion`.
    """

    needs_grad = True

    def __init__(
        self,
        *,
        aggregation: Literal["batch_sq", "per_example_sq", "per_example_abs"] = "batch_sq",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("aggregation", aggregation, ("batch_sq", "per_example_sq", "per_example_abs"))
        self.aggregation = aggregation

    def backward(self, outputs: torch.Tensor, targets: torch.Tensor | None, task: Any) -> None:
        loss_for(outputs, targets, task, self.name).backward()

    def observe_grad(
        self, state: Any, module: nn.Module, a: torch.Tensor, g: torch.Tensor, batch_size: int
    ) -> Any:
        contrib = spatial_sum(a * g).double()  # (b, C): d loss / d gate per example
        b = contrib.shape[0]
        if self.aggregation == "batch_sq":
            value, count = (contrib.sum(0) * (batch_size / b)).square(), 1
        elif self.aggregation == "per_example_sq":
            value, count = (contrib * batch_size).square().sum(0), b
        else:
            value, count = (contrib * batch_size).abs().sum(0), b
        if state is None:
            return [value, count]
        state[0] += value
        state[1] += count
        return state

    def finalize(self, state: Any, module: nn.Module) -> torch.Tensor:
        return state[0] / state[1]
