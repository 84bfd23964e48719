"""``taylor_gn``: TaylorFO with gradient-normalised backpropagation (Sapkota et al., MIUA 2023)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from medprune.criteria.base import check_choice, register_criterion
from medprune.criteria.streaming import StreamingCriterion, loss_for, spatial_sum


@register_criterion("taylor_gn")
class TaylorGN(StreamingCriterion):
    """First-order change of the network output when a channel is removed, with per-example
    normalised output gradients (the polyp-segmentation method; no public reference code).

    For each batch: forward; take the gradient of the loss w.r.t. the model output,
    ``g_n = d loss / d y_n`` (``task.loss`` when a task is given, else cross-entropy), or a
    seeded standard-normal vector (``output_grad="random"``, label-free); normalise it per example
    over *all* output elements, ``g_n / (|g_n|_2 + 1e-12)``; backpropagate that from the output.
    Channel ``k``'s contribution is ``c[n, k] = sum_s a[n, k, s] * delta[n, k, s]`` at the norm
    output (else the producer output); the score is ``mean_n c[n, k]^2`` (``"sq"``) or
    ``mean_n |c[n, k]|`` (``"abs"``).

    Unverified against the paper (its full text and code were not available): the choice of
    ``sq`` vs ``abs`` (default ``"sq"``: with random unit gradients it estimates the squared output
    change) and loss-based vs random gradients (default ``"auto"``: the loss gradient when the
    batch has labels, random otherwise). Both are parameters. With a batch-pooled loss (e.g. a
    Dice over the whole batch) the per-example gradient is only approximately per example.

    Args:
        aggregation: ``"sq"`` or ``"abs"``.
        output_grad: ``"auto"``, ``"loss"`` or ``"random"``.
        seed: seed of the random output gradients.
        **kwargs: see :class:`~medprune.criteria.streaming.StreamingCriterion`.
    """

    needs_grad = True

    def __init__(
        self,
        *,
        aggregation: Literal["sq", "abs"] = "sq",
        output_grad: Literal["auto", "loss", "random"] = "auto",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("aggregation", aggregation, ("sq", "abs"))
        check_choice("output_grad", output_grad, ("auto", "loss", "random"))
        self.aggregation = aggregation
        self.output_grad = output_grad
        self.seed = int(seed)
        self._gen: torch.Generator | None = None

    def compute(self, groups: Any, model: nn.Module, calibration: Any, task: Any) -> Any:
        self._gen = torch.Generator().manual_seed(self.seed)
        return super().compute(groups, model, calibration, task)

    def backward(self, outputs: torch.Tensor, targets: torch.Tensor | None, task: Any) -> None:
        use_loss = self.output_grad == "loss" or (
            self.output_grad == "auto" and targets is not None
        )
        if use_loss:
            loss = loss_for(outputs, targets, task, self.name)
            (grad,) = torch.autograd.grad(loss, outputs, retain_graph=True)
        else:
            grad = torch.randn(outputs.shape, generator=self._gen).to(outputs)
        flat = grad.reshape(grad.shape[0], -1)  # (B, prod(output dims))
        unit = flat / (flat.norm(dim=1, keepdim=True) + 1e-12)
        outputs.backward(unit.reshape_as(grad))

    def observe_grad(
        self, state: Any, module: nn.Module, a: torch.Tensor, g: torch.Tensor, batch_size: int
    ) -> Any:
        contrib = spatial_sum(a * g).double()  # (b, C)
        value = contrib.square() if self.aggregation == "sq" else contrib.abs()
        if state is None:
            return [value.sum(0), contrib.shape[0]]
        state[0] += value.sum(0)
        state[1] += contrib.shape[0]
        return state

    def finalize(self, state: Any, module: nn.Module) -> torch.Tensor:
        return state[0] / state[1]
