"""Class-dependent lottery-ticket pruning (Entezari & Saukh, SenSys-ML 2020), registered as ``"lottery"``.

Iterative *unstructured* pruning with rewinding: train, remove a fraction of the remaining weights
by magnitude (``|w_T|``) or magnitude increase (``|w_T| - |w_rewind|``), per tensor or globally,
rewind the survivors to their initial (or epoch-``k``) values and train again. Pruned weights are
held at exactly zero: their gradients are masked after every backward pass and the mask is re-applied
after every optimiser step (so momentum or weight decay cannot revive them).

The class-dependent part: an important class (default: the minority class of the training labels)
has its false negatives on ``context.val_loader`` tracked every round. A round is accepted only if
the important-class recall stays within ``fn_tolerance`` of the dense model's (recall = 1 - FN /
support, so the tolerance is in units of that class's validation support); otherwise the
important class's loss weight is multiplied by ``weight_growth`` and the round is retrained, at
most ``max_retries`` times. A round that still fails ends the search and the last accepted model is
returned. Fixes of the reference code (see ``methods-betarank-hrank-classdep.md`` §4.7): the
validation split is never trained on, and metrics are computed afresh each round.

Unstructured masks do not reduce dense MACs: ``summary["macs_removed"]`` is 0 and the parameter
figures count non-zero weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medprune.errors import ConfigError
from medprune.methods._lottery_masks import (
    MaskCallback,
    prunable_parameters,
    scores_of,
    select_masks,
)
from medprune.methods._training import (
    as_target,
    cost,
    evaluate,
    fit,
    require,
    summary,
    working_copy,
)
from medprune.methods.base import MethodContext, PruneResult, Target, register_method
from medprune.methods.guard import RecallGuard, class_counts, minority_class

__all__ = ["MaskCallback", "WeightedLoss", "lottery", "prunable_parameters", "select_masks"]


class WeightedLoss(nn.Module):
    """Class-weighted cross-entropy, or one-hot BCE with per-class ``pos_weight`` (reference).

    ``outputs`` ``(B, K)`` or ``(B, K, *S)`` logits, ``targets`` int64 ``(B,)`` / ``(B, *S)``.
    """

    def __init__(self, weights: torch.Tensor, kind: str = "ce") -> None:
        super().__init__()
        self.register_buffer("weights", weights.float().clone())
        self.kind = kind

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = self.weights.to(outputs.device, outputs.dtype)
        if self.kind == "onehot_bce":
            onehot = F.one_hot(targets, outputs.shape[1]).movedim(-1, 1).to(outputs.dtype)
            shape = (1, -1) + (1,) * (outputs.dim() - 2)
            return F.binary_cross_entropy_with_logits(outputs, onehot, pos_weight=w.view(shape))
        return F.cross_entropy(outputs, targets, weight=w)


def _round_record(
    round_idx: int, attempt: int, metrics: dict[str, Any], remaining: float, weights: torch.Tensor
) -> dict[str, Any]:
    per_class = metrics.get("per_class", {})
    rows = per_class.items() if isinstance(per_class, dict) else enumerate(per_class)
    return {
        "round": round_idx,
        "attempt": attempt,
        "remaining_fraction": remaining,
        "auc_roc": metrics.get("auc_roc"),
        "accuracy": metrics.get("accuracy"),
        "per_class": {
            int(c): {k: row[k] for k in ("fn", "fp", "recall", "support") if k in row}
            for c, row in rows
        },
        "class_weights": [float(w) for w in weights],
    }


def _validate(
    target: Target,
    prune_fraction: float,
    scope: str,
    criterion: str,
    loss: str,
    rewind_epoch: int,
    epochs: int,
    max_retries: int,
    weight_growth: float,
) -> None:
    if target.kind == "latency":
        raise ConfigError(
            "lottery prunes unstructured weights, which does not reduce dense latency; use "
            f"Target(params=...) or Target(ratio=...), or a structured method (oneshot, "
            f"iterative) for Target(latency={target.latency})."
        )
    if target.kind == "macs":
        raise ConfigError(
            "lottery prunes unstructured weights, which does not reduce dense MACs; use "
            f"Target(params=...) or Target(ratio=...); got Target(macs={target.macs})."
        )
    if not 0.0 < prune_fraction < 1.0:
        raise ConfigError(f"prune_fraction must be in (0, 1); got {prune_fraction!r}.")
    for name, value, allowed in (
        ("scope", scope, ("per_tensor", "global")),
        ("criterion", criterion, ("magnitude", "magnitude_increase")),
        ("loss", loss, ("ce", "onehot_bce")),
    ):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}; got {value!r}.")
    if not 0 <= rewind_epoch < max(epochs, 1):
        raise ConfigError(
            f"rewind_epoch must be in [0, epochs={epochs}) (0 = rewind to initialisation); "
            f"got {rewind_epoch!r}."
        )
    if max_retries < 0 or weight_growth < 1.0:
        raise ConfigError(
            f"need max_retries >= 0 and weight_growth >= 1; got {max_retries!r}, {weight_growth!r}."
        )


@register_method("lottery")
def lottery(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target,
    prune_fraction: float = 0.5,
    rounds: int | None = None,
    scope: str = "per_tensor",
    criterion: str = "magnitude_increase",
    rewind_epoch: int = 0,
    include_bias: bool = False,
    include_head: bool = True,
    important_class: int | None = None,
    class_weights: Sequence[float] | str | None = None,
    important_weight: float = 1.0,
    loss: str = "ce",
    fn_tolerance: float = 0.0,
    weight_growth: float = 2.0,
    max_retries: int = 2,
    train_dense: bool = True,
) -> PruneResult:
    """Class-dependent iterative magnitude pruning with rewinding.

    Args:
        model: classification model, inputs ``(B, C, *S)`` -> logits ``(B, K)``; not modified.
        example_inputs: ``(B, C, *S)`` batch used for the cost figures.
        context: needs ``task``, ``train_loader``, ``val_loader``; ``recipe.epochs`` epochs per round.
        target: ``Target(params=p)`` or ``Target(ratio=p)``: remove the fraction ``p`` of the
            prunable weights (the last round removes just enough to reach it).
        prune_fraction: fraction of the remaining weights removed per round (reference: 0.5).
        rounds: number of pruning rounds; None = as many as ``target`` needs.
        scope: ``"per_tensor"`` (reference) or ``"global"``.
        criterion: ``"magnitude_increase"`` (reference, ``|w_T| - |w_rewind|``) or ``"magnitude"``.
        rewind_epoch: 0 rewinds to the initial weights, ``k`` to the weights after epoch ``k`` of
            the dense training.
        include_bias / include_head: also prune biases / the last layer.
        important_class: protected class; None = minority class of the training labels.
        class_weights: base loss weights ``(K,)``, ``"balanced"`` (inverse frequency) or None (ones).
        important_weight: factor on the important class's weight from round 1 on.
        loss: ``"ce"`` (class-weighted cross-entropy) or ``"onehot_bce"`` (reference).
        fn_tolerance: allowed important-class recall drop vs the dense model (fraction of support).
        weight_growth: factor on the important class's weight after a rejected attempt.
        max_retries: retrainings of a rejected round before the search stops.
        train_dense: train the dense model first (round 0); False when it is already trained.

    Returns:
        PruneResult with ``masks`` ``{parameter name: bool (True = kept)}``, ``plan=None`` and
        per-round history (AUC-ROC, per-class FN/FP, remaining weight fraction, class weights).
    """
    target = as_target(target, method="lottery")
    _validate(
        target, prune_fraction, scope, criterion, loss, rewind_epoch,
        context.recipe.epochs, max_retries, weight_growth,
    )  # fmt: skip
    require(context, "task", "train_loader", "val_loader", method="lottery")
    model = working_copy(model, context.device)
    before = cost(model, example_inputs)
    names = prunable_parameters(model, include_bias=include_bias, include_head=include_head)
    masks = {n: torch.ones(model.get_parameter(n).shape, dtype=torch.bool) for n in names}
    total = sum(m.numel() for m in masks.values())
    counts = class_counts(context.train_loader, getattr(context.task, "num_classes", None))
    if important_class is None:
        important_class = minority_class(context.train_loader)
    weights = _base_weights(class_weights, counts)

    settings = dict(  # what the phases compute, for their checkpoint fingerprints
        target=target, prune_fraction=prune_fraction, rounds=rounds, scope=scope,
        criterion=criterion, rewind_epoch=rewind_epoch, include_bias=include_bias,
        include_head=include_head, important_class=important_class,
        important_weight=important_weight, loss=loss, fn_tolerance=fn_tolerance,
        weight_growth=weight_growth, max_retries=max_retries,
    )  # fmt: skip
    state0 = copy.deepcopy(model.state_dict())
    dense_cb = MaskCallback(masks, snapshot_epoch=rewind_epoch)
    if train_dense:
        fit(
            model,
            context,
            callbacks=[dense_cb],
            task=_task(context.task, weights, loss),
            phase="lottery_dense",
            options={**settings, "class_weights": weights.tolist()},
        )
    rewind = dense_cb.snapshot_ if rewind_epoch > 0 else state0
    if rewind is None:
        raise ConfigError(f"rewind_epoch={rewind_epoch} was never reached during dense training.")
    guard = RecallGuard(
        context.task, context.val_loader, important_class=important_class,
        max_recall_drop=fn_tolerance, reference=model,
    )  # fmt: skip
    history = [_round_record(0, 0, evaluate(model, context.task, context.val_loader), 1.0, weights)]
    context.emit({"event": "round", "method": "lottery", **history[-1]})
    weights[important_class] *= important_weight

    n_rounds = _n_rounds(target.value, prune_fraction) if rounds is None else rounds
    accepted = copy.deepcopy(model.state_dict())
    for round_idx in range(1, n_rounds + 1):
        remaining_now = sum(int(m.sum()) for m in masks.values()) / total
        fraction = min(prune_fraction, max(0.0, 1.0 - (1.0 - target.value) / remaining_now))
        if fraction <= 0.0:
            break
        scores = scores_of(model, rewind, names, criterion)
        new_masks = select_masks(masks, scores, fraction, scope=scope)
        remaining = sum(int(m.sum()) for m in new_masks.values()) / total
        ok = False
        for attempt in range(max_retries + 1):
            model.load_state_dict(rewind)
            cb = MaskCallback(new_masks)
            cb.apply(model)
            fit(
                model,
                context,
                callbacks=[cb],
                task=_task(context.task, weights, loss),
                phase=f"lottery_round{round_idx}_attempt{attempt}",
                options={**settings, "class_weights": weights.tolist(), "masks": new_masks},
            )
            metrics = evaluate(model, context.task, context.val_loader)
            ok, info = guard.verdict(metrics)
            record = _round_record(round_idx, attempt, metrics, remaining, weights)
            record.update(accepted=ok, important_class=important_class, guard=info)
            history.append(record)
            context.emit({"event": "round", "method": "lottery", **record})
            if ok:
                break
            weights[important_class] *= weight_growth
        if not ok:
            model.load_state_dict(accepted)
            break
        masks, accepted = new_masks, copy.deepcopy(model.state_dict())

    kept = sum(int(m.sum()) for m in masks.values())
    after = (before[0], before[1] - (total - kept))
    return PruneResult(
        model=model,
        plan=None,
        summary=summary(
            before,
            after,
            remaining_fraction=kept / total,
            prunable_weights=total,
            important_class=important_class,
            rounds_accepted=sum(1 for h in history if h.get("accepted") and h["round"] > 0),
        ),  # fmt: skip
        history=history,
        method="lottery",
        masks={n: m.cpu() for n, m in masks.items()},
    )


def _base_weights(
    class_weights: Sequence[float] | str | None, counts: torch.Tensor
) -> torch.Tensor:
    k = counts.numel()
    if class_weights is None:
        return torch.ones(k)
    if class_weights == "balanced":
        freq = counts.float().clamp(min=1)
        return freq.sum() / (k * freq)
    if isinstance(class_weights, str):
        raise ConfigError(
            f"class_weights must be None, 'balanced' or a list; got {class_weights!r}."
        )
    w = torch.as_tensor(list(class_weights), dtype=torch.float32)
    if w.numel() != k or bool((w <= 0).any()):
        raise ConfigError(f"class_weights needs {k} positive values; got {list(class_weights)}.")
    return w


def _task(task: Any, weights: torch.Tensor, loss: str) -> Any:
    """``task`` itself, or a shallow copy whose ``loss_fn`` is the class-weighted loss."""
    if loss == "ce" and bool((weights == weights[0]).all()):
        return task
    weighted = copy.copy(task)
    weighted.loss_fn = WeightedLoss(weights, loss)
    return weighted


def _n_rounds(target_fraction: float, prune_fraction: float) -> int:
    if target_fraction <= 0.0:
        return 0
    return max(
        1, math.ceil(math.log(1.0 - target_fraction) / math.log(1.0 - prune_fraction) - 1e-9)
    )
