"""The masks of class-dependent lottery-ticket pruning: which weights may be pruned, which go
in a round (magnitude or magnitude increase, per tensor or global), and the callback that holds
them at zero during training."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from medprune.methods._training import CallbackBase, unwrap

__all__ = ["MaskCallback", "prunable_parameters", "scores_of", "select_masks"]

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def prunable_parameters(
    model: nn.Module, *, include_bias: bool = False, include_head: bool = True
) -> list[str]:
    """Names of the conv / linear weights (and biases) that unstructured pruning may touch.

    The *head* is the last conv / linear module in ``named_modules()`` order.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _PRUNABLE)]
    if not include_head:
        layers = layers[:-1]
    names = []
    for name, module in layers:
        prefix = f"{name}." if name else ""
        names.append(prefix + "weight")
        if include_bias and module.bias is not None:
            names.append(prefix + "bias")
    return names


def select_masks(
    masks: dict[str, torch.Tensor],
    scores: dict[str, torch.Tensor],
    fraction: float,
    *,
    scope: str = "per_tensor",
) -> dict[str, torch.Tensor]:
    """New keep-masks with ``floor(fraction * remaining)`` more of the lowest scores removed.

    Args:
        masks: keep-masks ``{name: bool tensor}`` (True = kept); never modified.
        scores: same shapes, higher = more important.
        fraction: fraction of the *remaining* weights to remove, in [0, 1).
        scope: ``"per_tensor"`` (each tensor loses the same fraction) or ``"global"`` (one ranking).
    """
    new = {name: m.clone() for name, m in masks.items()}
    if scope == "per_tensor":
        for name, mask in new.items():
            alive = mask.nonzero(as_tuple=True)
            k = int(math.floor(fraction * alive[0].numel()))
            if k == 0:
                continue
            order = torch.argsort(scores[name][alive], stable=True)[:k]
            mask[tuple(a[order] for a in alive)] = False
        return new
    flat_scores = torch.cat([scores[n][m] for n, m in masks.items()])
    k = int(math.floor(fraction * flat_scores.numel()))
    if k == 0:
        return new
    threshold_idx = torch.argsort(flat_scores, stable=True)[:k]
    drop = torch.zeros(flat_scores.numel(), dtype=torch.bool)
    drop[threshold_idx] = True
    offset = 0
    for mask in new.values():
        alive = mask.nonzero(as_tuple=True)
        n_alive = alive[0].numel()
        here = drop[offset : offset + n_alive]
        mask[tuple(a[here] for a in alive)] = False
        offset += n_alive
    return new


class MaskCallback(CallbackBase):
    """Holds masked weights at zero during training; may snapshot the weights after epoch ``k``.

    Resumable: :meth:`state_dict` holds the epoch count and the snapshot, so a dense training
    resumed after epoch ``k`` still has its rewind point.
    """

    def __init__(self, masks: dict[str, torch.Tensor], *, snapshot_epoch: int = 0) -> None:
        self.masks = masks
        self.snapshot_epoch = snapshot_epoch
        self.snapshot_: dict[str, torch.Tensor] | None = None
        self._epochs = 0

    def apply(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, mask in self.masks.items():
                param = unwrap(model).get_parameter(name)
                param.mul_(mask.to(param.device, param.dtype))

    def on_train_start(self, state: Any) -> None:
        self.apply(state.model)

    def after_backward(self, state: Any) -> None:
        for name, mask in self.masks.items():
            param = unwrap(state.model).get_parameter(name)
            if param.grad is not None:
                param.grad.mul_(mask.to(param.grad.device, param.grad.dtype))

    def after_step(self, state: Any) -> None:
        self.apply(state.model)

    def on_epoch_end(self, state: Any) -> None:
        self._epochs += 1
        if self._epochs == self.snapshot_epoch:
            self.snapshot_ = copy.deepcopy(unwrap(state.model).state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self._epochs, "snapshot": self.snapshot_}

    def load_state_dict(self, state_dict: dict[str, Any], model: nn.Module) -> None:
        self._epochs = int(state_dict["epochs"])
        snapshot = state_dict.get("snapshot")
        self.snapshot_ = None if snapshot is None else dict(snapshot)


def scores_of(
    model: nn.Module, rewind: dict[str, torch.Tensor], names: list[str], criterion: str
) -> dict[str, torch.Tensor]:
    """``|w|`` (``"magnitude"``) or ``|w| - |w_rewind|`` (``"magnitude_increase"``) per weight."""
    scores = {}
    for name in names:
        w = model.get_parameter(name).detach().abs().cpu()
        if criterion == "magnitude_increase":
            w = w - rewind[name].detach().abs().cpu()
        scores[name] = w
    return scores
