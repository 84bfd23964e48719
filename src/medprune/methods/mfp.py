"""MFP-like meta-attribute filter pruning (He, Liu, Zhu, Yang; TNNLS 2022), registered as ``"mfp"``.

Soft pruning (as :func:`medprune.methods.soft.sfp`) where, at every pruning step, one candidate
selection is built per criterion of ``criteria`` (default: ``l1``, ``l2`` and FPGM with ``l2`` /
``l1`` / cosine distances), each candidate network (current weights with that mask) is scored by a
*meta-attribute*, and the best candidate is applied. Which criterion won at which step is written to
the history and emitted through ``context.emit``.

**Unverified.** Only the papers' abstracts could be read (see ``methods-sauron-taylor-mfp.md`` §4.3
and §6): the exact criteria set, the paper's meta-attribute, and whether the choice is made for the
whole network or per layer are not confirmed. This implementation is therefore "MFP-like": the
choice is global (one criterion per step), and the attribute is pluggable through
:func:`register_attribute`. Shipped attributes:

* ``calibration_loss`` (default; lower is better): mean task loss of the candidate on
  ``attribute_batches`` batches of ``context.calibration`` (else ``context.train_loader``), eval mode;
* ``calibration_accuracy`` (higher is better): fraction of correct argmax predictions (pixels for
  segmentation) on the same batches;
* ``norm_statistics`` (data-free, lower is better): mean over prunable groups of the fraction of
  channel energy the candidate removes, where a channel's energy is ``gamma^2 + beta^2`` of its
  norm layer (the second moment of the normalised output, ``E[y^2]`` for ``y ~ N(beta, gamma^2)``)
  or, without an affine norm, the squared L2 norm of its filters.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.methods._masking import (
    Selection,
    apply_selection,
    make_criterion,
    parse_criterion,
    select,
)
from medprune.methods._training import as_target
from medprune.methods.base import MethodContext, PruneResult, Target, register_method
from medprune.methods.soft import Chooser, run_soft, validate_soft_options
from medprune.registry import Registry
from medprune.tasks.targets import class_logits, targets_for_outputs

__all__ = ["ATTRIBUTES", "MetaAttribute", "get_attribute", "masked", "mfp", "register_attribute"]

DEFAULT_CRITERIA = ("l1", "l2", "fpgm:l2", "fpgm:l1", "fpgm:cos")


@dataclass(frozen=True)
class MetaAttribute:
    """A property of a candidate pruned network.

    Attributes:
        fn: ``fn(graph, selection, batches, task) -> float``; ``graph.model`` holds the current
            (unmasked) weights; data-driven attributes apply the mask with :func:`masked`.
        higher_is_better: direction of the comparison between candidates.
        needs_data: whether ``batches`` must be non-empty.
    """

    fn: Callable[[Any, Selection, list[Any], Any], float]
    higher_is_better: bool
    needs_data: bool


ATTRIBUTES: Registry[MetaAttribute] = Registry("meta-attribute")


def register_attribute(
    name: str, *, higher_is_better: bool, needs_data: bool, override: bool = False
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register ``fn(graph, selection, batches, task) -> float`` as a meta-attribute."""

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        ATTRIBUTES.add(name, MetaAttribute(fn, higher_is_better, needs_data), override=override)
        return fn

    return decorator


def get_attribute(name: str) -> MetaAttribute:
    """The meta-attribute called ``name`` (ConfigError with did-you-mean otherwise)."""
    return ATTRIBUTES.get(name)


@contextmanager
def masked(graph: Any, selection: Mapping[str, torch.Tensor]) -> Any:
    """Temporarily apply ``selection`` (zero its channels); every touched tensor is restored."""
    saved = []
    for key in selection:
        group = graph.group(key)
        for s in group.slices:
            if s.role != "in":
                t = group.tensor(s)
                saved.append((t, t.detach().clone()))
    was_training = graph.model.training
    try:
        with torch.no_grad():
            apply_selection(graph, selection)
        graph.model.eval()
        yield graph.model
    finally:
        graph.model.train(was_training)
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)


def _run(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


@register_attribute("calibration_loss", higher_is_better=False, needs_data=True)
def calibration_loss(graph: Any, selection: Selection, batches: list[Any], task: Any) -> float:
    """Mean task loss of the candidate on ``batches`` (eval mode, no grad)."""
    with masked(graph, selection) as model, torch.no_grad():
        losses = [float(task.loss(_run(model, x), y)) for x, y in batches]
    return sum(losses) / len(losses)


@register_attribute("calibration_accuracy", higher_is_better=True, needs_data=True)
def calibration_accuracy(graph: Any, selection: Selection, batches: list[Any], task: Any) -> float:
    """Fraction of correct argmax predictions (images or pixels) of the candidate on ``batches``."""
    correct = total = 0
    with masked(graph, selection) as model, torch.no_grad():
        for x, y in batches:
            outputs = _run(model, x)
            pred = class_logits(outputs).argmax(1)  # (B,) or (B, *S); one channel = sigmoid
            y = targets_for_outputs(outputs, y)  # any label form -> (B,) or (B, *S)
            correct += int((pred == y).sum())
            total += y.numel()
    return correct / max(total, 1)


def _channel_energy(group: Any) -> torch.Tensor:
    gammas = group.norm_weights()
    if gammas:
        energy = torch.stack([g.double() ** 2 for g in gammas]).sum(0)  # (n,)
        for s in group.members("per_channel", "bias"):
            if not isinstance(group.model.get_submodule(s.module_name), nn.PReLU):
                energy = energy + group.channel_values(s).double() ** 2
        return energy
    weights = group.out_weights()
    return torch.stack([w.double().pow(2).sum(1) for w in weights]).sum(0)  # (n,)


@register_attribute("norm_statistics", higher_is_better=False, needs_data=False)
def norm_statistics(graph: Any, selection: Selection, batches: list[Any], task: Any) -> float:
    """Mean over prunable groups of the fraction of channel energy that ``selection`` removes."""
    fractions = []
    for group in graph.prunable_groups():
        idx = selection.get(group.key)
        if idx is None or idx.numel() == 0:
            fractions.append(0.0)
            continue
        energy = _channel_energy(group)
        fractions.append(float(energy[idx].sum() / energy.sum().clamp_min(1e-30)))
    return sum(fractions) / max(len(fractions), 1)


def _batches(context: MethodContext, n: int) -> list[Any]:
    source: Iterable[Any] | None = (
        context.calibration if context.calibration is not None else context.train_loader
    )
    if source is None:
        return []
    out = []
    for inputs, targets in itertools.islice(source, n):
        out.append((inputs.to(context.device), targets.to(context.device)))
    return out


def _mfp_chooser(
    criteria: Sequence[str],
    attribute: MetaAttribute,
    attribute_name: str,
    n_batches: int,
    target: Target,
    min_channels: int,
    scope: str,
    context: MethodContext,
) -> Callable[[Any], Chooser]:
    """Chooser returning ``(selection, {"winner", "attribute", "values"})``: the choice travels in
    the soft-pruning history (and so in its epoch checkpoints)."""

    def make(graph: Any) -> Chooser:
        built = {spec: make_criterion(spec) for spec in criteria}

        def choose(graph: Any, step: int) -> tuple[Selection, dict[str, Any]]:
            batches = _batches(context, n_batches) if attribute.needs_data else []
            candidates = {}
            values = {}
            for spec, criterion in built.items():
                scores = criterion(graph, context.calibration, task=context.task)
                candidates[spec] = select(
                    graph, scores, target, min_channels=min_channels, scope=scope
                )
                values[spec] = float(attribute.fn(graph, candidates[spec], batches, context.task))
            pick = max if attribute.higher_is_better else min
            winner = pick(values, key=lambda k: values[k])
            record = {"winner": winner, "attribute": attribute_name, "values": values}
            context.emit({"event": "mfp_choice", "method": "mfp", "step": step, **record})
            return candidates[winner], record

        return choose

    return make


@register_method("mfp")
def mfp(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target,
    criteria: Sequence[str] = DEFAULT_CRITERIA,
    attribute: str = "calibration_loss",
    attribute_batches: int = 2,
    interval: int = 1,
    mask_grads: bool = False,
    reset_optimizer_state: bool | None = None,
    mask_scope: str = "producer",
    min_channels: int = 1,
    scope: str = "uniform",
    ignore: Sequence[str] = (),
) -> PruneResult:
    """Soft pruning that switches criterion at every step by a meta-attribute (MFP-like).

    Args:
        model: model with inputs ``(B, C, *S)``; not modified.
        example_inputs: ``(B, C, *S)`` batch for tracing and the cost figures.
        context: needs ``task`` and ``train_loader`` (``calibration`` preferred for attributes).
        target: as in :func:`medprune.methods.soft.sfp`.
        criteria: candidate criteria: ``"l1"``, ``"l2"``, ``"fpgm:l2"``, ``"fpgm:l1"``,
            ``"fpgm:cos"`` or any registered criterion name.
        attribute: registered meta-attribute (``"calibration_loss"``, ``"calibration_accuracy"``,
            ``"norm_statistics"``).
        attribute_batches: batches fed to data-driven attributes per step.
        interval, mask_grads, reset_optimizer_state, mask_scope, min_channels, scope, ignore: as in
            ``sfp``.

    Returns:
        PruneResult; each history entry has ``winner`` (the criterion applied) and ``values``
        (the attribute of every candidate); ``summary["criterion_wins"]`` counts the winners.
    """
    target = as_target(target, method="mfp")
    if isinstance(criteria, str) or not criteria:
        raise ConfigError(
            f"criteria must be a non-empty list of criterion specs; got {criteria!r}."
        )
    for spec in criteria:
        parse_criterion(spec)
    meta = get_attribute(attribute)
    if not isinstance(attribute_batches, int) or attribute_batches < 1:
        raise ConfigError(f"attribute_batches must be an integer >= 1; got {attribute_batches!r}.")
    validate_soft_options(interval, ignore, min_channels, scope, mask_scope)
    result = run_soft(
        model,
        example_inputs,
        context=context,
        method="mfp",
        make_chooser=_mfp_chooser(
            criteria, meta, attribute, attribute_batches, target, min_channels, scope, context
        ),
        interval=interval,
        mask_grads=mask_grads,
        reset_optimizer_state=reset_optimizer_state,
        mask_scope=mask_scope,
        ignore=ignore,
        options=dict(
            target=target,
            criteria=list(criteria),
            attribute=attribute,
            attribute_batches=attribute_batches,
            min_channels=min_channels,
            scope=scope,
        ),
    )
    wins: dict[str, int] = {}
    for entry in result.history:
        wins[entry["winner"]] = wins.get(entry["winner"], 0) + 1
    result.summary["criterion_wins"] = wins
    return result
