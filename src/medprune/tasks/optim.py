"""Optimizer and scheduler built from a :class:`TrainRecipe`, and their rebuild after pruning."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from medprune.tasks.recipe import TrainRecipe

__all__ = ["build_optimizer", "build_scheduler", "optimizer_out_of_sync", "rebuild_optimizer"]

logger = logging.getLogger(__name__)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(recipe: TrainRecipe, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (with ``recipe.momentum``), Adam or AdamW over ``model``'s trainable parameters."""
    params = _trainable(model)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def build_scheduler(recipe: TrainRecipe, optimizer: torch.optim.Optimizer) -> Any:
    """Epoch-wise scheduler: cosine to 0 over ``recipe.epochs``, step decay, or None."""
    if recipe.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(recipe.epochs, 1))
    if recipe.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=recipe.step_size, gamma=recipe.gamma
        )
    return None


def rebuild_optimizer(
    recipe: TrainRecipe, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[torch.optim.Optimizer, Any]:
    """A fresh optimizer over ``model``'s current parameters and a scheduler at the same position.

    The per-parameter state (momentum, Adam moments) starts again from zero; the learning rate of
    each group and the scheduler's epoch counter carry over.
    """
    current_lrs = [group["lr"] for group in optimizer.param_groups]
    new_opt = build_optimizer(recipe, model)
    new_sched = build_scheduler(recipe, new_opt)
    if new_sched is not None and scheduler is not None:
        new_sched.load_state_dict(scheduler.state_dict())
    for group, lr in zip(new_opt.param_groups, current_lrs, strict=False):
        group["lr"] = lr
    return new_opt, new_sched


def optimizer_out_of_sync(optimizer: torch.optim.Optimizer, model: nn.Module) -> str | None:
    """Why ``optimizer`` no longer matches ``model`` (None when it does).

    Out of sync: the optimizer holds parameters the model no longer has (a pruning step replaced
    them without updating the optimizer), misses trainable ones, or keeps state whose shape differs
    from its parameter's.
    """
    in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
    in_model = {id(p) for p in _trainable(model)}
    if in_opt != in_model:
        return (
            f"{len(in_opt - in_model)} optimizer parameters are no longer in the model and "
            f"{len(in_model - in_opt)} model parameters are not in the optimizer"
        )
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != p.shape:
                    return (
                        f"optimizer state {key!r} has shape {tuple(value.shape)} but its "
                        f"parameter has {tuple(p.shape)}"
                    )
    return None
