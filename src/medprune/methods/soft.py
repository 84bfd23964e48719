"""Soft filter pruning: SFP (He et al., IJCAI 2018) and FPGM's soft schedule (He et al., CVPR 2019).

Masked training: before training and at the end of every ``interval`` epochs (always including the
last one) the lowest-scoring channels are chosen again and zeroed. Without gradient masking they
keep being updated and may win their place back at the next selection (SFP). With
``mask_grads=True`` their gradients are zeroed after every backward pass, as FPGM's released code
does.

Which tensors a mask zeroes (``mask_scope``):

* ``"producer"`` (default, SFP / FPGM): only the producing filters and biases. A following norm
  layer still emits its shift, so gradients reach the masked filters and they can recover.
  (Zeroing the norm affine too would make the channel output exactly 0, and ReLU's zero gradient
  at 0 would freeze it for good. The same holds, as in the reference, for a masked channel whose
  norm shift is <= 0 before a ReLU, e.g. a freshly initialised BN with ``beta = 0``.)
* ``"channel"``: :meth:`~medprune.graph.PruningGraph.zero_out` at every step (scale and shift too).

Exact extraction. After the last selection the chosen channels are zeroed *completely* with
``zero_out`` (norm scale and shift included), so they output exactly zero, and are then removed
with :func:`medprune.graph.prune_channels`: the compact model equals this masked model
(``summary["extraction_max_abs_diff"]``, measured on ``example_inputs``). The route chosen is
"zero the full channel" rather than folding the constant ``act(beta - gamma * mu / sqrt(var +
eps))`` into the consumers' biases, because folding is inexact next to zero padding and across
non-linear consumers; the change that dropping those constants makes to the producer-masked model
is reported as ``summary["shift_drop_max_abs_diff"]``. Groups whose zeroed channels reach a
consumer through a non-zero-preserving op (``group.zero_exact`` False, e.g. a sigmoid) are listed
in ``summary["inexact_groups"]``: their removal is not exact.

Fix of the reference behaviour: with ``mask_grads=True`` the optimiser state (momentum, Adam
moments) of the masked filters is also cleared at each selection, so they stay exactly zero;
``reset_optimizer_state=False`` reproduces FPGM's leftover-momentum drift.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.methods._masking import (
    MASK_SCOPES,
    Selection,
    apply_selection,
    make_criterion,
    mask_gradients,
    masked_fraction,
    parse_criterion,
    reset_optimizer_state,
    select,
)
from medprune.methods._training import (
    CallbackBase,
    as_target,
    check_guard,
    cost,
    fit,
    forward,
    require,
    set_guard_reference,
    summary,
    to_device,
    working_copy,
)
from medprune.methods.base import MethodContext, PruneResult, Target, register_method

__all__ = ["SoftPruningCallback", "fpgm_soft", "run_soft", "sfp"]

Chooser = Callable[[Any, int], Selection | tuple[Selection, dict[str, Any]]]


class SoftPruningCallback(CallbackBase):
    """Re-selects and zeroes channels on a schedule during :func:`medprune.tasks.train`.

    Resumable: :meth:`state_dict` holds the current selection and the step history, so a run
    resumed from an epoch checkpoint does not re-select at its start (the restored weights are
    already masked) and continues the schedule where it stopped.

    Args:
        graph: pruning graph of the model being trained.
        choose: ``choose(graph, step) -> {group_key: prune_idx}``, called at each pruning step;
            it may also return ``(selection, info)``, ``info`` (plain data) being added to that
            step's history entry.
        epochs: total epochs of the run (the last one always ends with a pruning step).
        interval: epochs between pruning steps.
        mask_grads: zero the masked channels' gradients after every backward pass.
        reset_state: clear the masked channels' optimiser state at each pruning step.
        mask_scope: ``"producer"`` (filters and biases) or ``"channel"`` (``zero_out``).
    """

    def __init__(
        self,
        graph: Any,
        choose: Chooser,
        *,
        epochs: int,
        interval: int = 1,
        mask_grads: bool = False,
        reset_state: bool = False,
        mask_scope: str = "producer",
    ) -> None:
        self.graph = graph
        self.mask_scope = mask_scope
        self.choose = choose
        self.epochs = epochs
        self.interval = interval
        self.mask_grads = mask_grads
        self.reset_state = reset_state
        self.selection_: Selection = {}
        self.history_: list[dict[str, Any]] = []
        self._epochs_done = 0
        self._resumed = False

    def prune_step(self, optimizer: torch.optim.Optimizer | None = None) -> Selection:
        """Choose and zero channels now; returns the selection."""
        chosen = self.choose(self.graph, len(self.history_))
        info: dict[str, Any] = {}
        if isinstance(chosen, tuple):
            chosen, info = chosen
        self.selection_ = chosen
        apply_selection(self.graph, self.selection_, scope=self.mask_scope)
        if self.reset_state:
            reset_optimizer_state(self.graph, optimizer, self.selection_, scope=self.mask_scope)
        self.history_.append(
            {
                "step": len(self.history_),
                "epoch": self._epochs_done,
                "masked_channels": sum(int(v.numel()) for v in self.selection_.values()),
                "masked_fraction": masked_fraction(self.graph, self.selection_),
                **info,
            }
        )
        return self.selection_

    def on_train_start(self, state: Any) -> None:
        if not self._resumed:  # a resumed run's weights and selection are already restored
            self.prune_step(state.optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {
            "selection": {k: v.detach().cpu() for k, v in self.selection_.items()},
            "history": copy.deepcopy(self.history_),
            "epochs_done": self._epochs_done,
        }

    def load_state_dict(self, state_dict: dict[str, Any], model: nn.Module) -> None:
        self.selection_ = {
            k: torch.as_tensor(v, dtype=torch.long) for k, v in state_dict["selection"].items()
        }
        self.history_ = list(state_dict["history"])
        self._epochs_done = int(state_dict["epochs_done"])
        self._resumed = True

    def after_backward(self, state: Any) -> None:
        if self.mask_grads and self.selection_:
            mask_gradients(self.graph, self.selection_, scope=self.mask_scope)

    def on_epoch_end(self, state: Any) -> None:
        self._epochs_done += 1
        if self._epochs_done % self.interval == 0 or self._epochs_done >= self.epochs:
            self.prune_step(state.optimizer)


def validate_soft_options(
    interval: int,
    ignore: Sequence[str],
    min_channels: int,
    scope: str = "uniform",
    mask_scope: str = "producer",
) -> None:
    """Shared checks of the soft methods' options."""
    if mask_scope not in MASK_SCOPES:
        raise ConfigError(f"mask_scope must be one of {MASK_SCOPES}; got {mask_scope!r}.")
    if scope not in ("uniform", "global"):
        raise ConfigError(f"scope must be 'uniform' or 'global'; got {scope!r}.")
    if not isinstance(interval, int) or interval < 1:
        raise ConfigError(f"interval must be an integer >= 1 (epochs); got {interval!r}.")
    if isinstance(ignore, str):
        raise ConfigError(f"ignore must be a list of module names; got the string {ignore!r}.")
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ConfigError(f"min_channels must be an integer >= 1; got {min_channels!r}.")


def run_soft(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    method: str,
    make_chooser: Callable[[Any], Chooser],
    interval: int = 1,
    mask_grads: bool = False,
    reset_optimizer_state: bool | None = None,
    mask_scope: str = "producer",
    ignore: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> PruneResult:
    """Masked training then exact physical extraction; shared by ``sfp``, ``fpgm_soft``, ``mfp``.

    The training is one phase named after ``method`` (``<context.checkpoint_dir>/sfp.pt``).

    Args:
        make_chooser: ``make_chooser(graph) -> choose(graph, step) -> selection``.
        options: the caller's settings that ``run_soft`` does not see (target, criterion...),
            for the phase fingerprint.
        Other arguments: see :func:`sfp`.
    """
    from medprune.graph import build_graph, prune_channels

    require(context, "task", "train_loader", method=method)
    model = working_copy(model, context.device)
    example_inputs = to_device(example_inputs, context.device)
    before = cost(model, example_inputs)
    set_guard_reference(context, model)
    graph = build_graph(model, example_inputs, ignore=tuple(ignore))
    callback = SoftPruningCallback(
        graph,
        make_chooser(graph),
        epochs=context.recipe.epochs,
        interval=interval,
        mask_grads=mask_grads,
        reset_state=mask_grads if reset_optimizer_state is None else reset_optimizer_state,
        mask_scope=mask_scope,
    )
    if context.recipe.epochs == 0:
        callback.prune_step()
    else:
        settings = dict(
            options or {},
            method=method,
            interval=interval,
            mask_grads=mask_grads,
            reset_optimizer_state=callback.reset_state,
            mask_scope=mask_scope,
            ignore=list(ignore),
        )
        fit(model, context, callbacks=[callback], phase=method, options=settings)
    for step in callback.history_:
        context.emit({"event": "soft_step", "method": method, **step})

    selection = callback.selection_
    soft_out = forward(model, example_inputs)
    apply_selection(graph, selection, scope="channel")
    masked_out = forward(model, example_inputs)
    fraction = masked_fraction(graph, selection)
    inexact = sorted(k for k in selection if not getattr(graph.group(k), "zero_exact", True))
    pruning_step = prune_channels(model, graph, selection)
    compact_out = forward(model, example_inputs)
    after = cost(model, example_inputs)
    verdict = check_guard(context, model, method=method)
    return PruneResult(
        model=model,
        plan=make_plan(model, [pruning_step], example_inputs, ignore),
        summary=summary(
            before,
            after,
            extraction_max_abs_diff=_max_diff(masked_out, compact_out),
            shift_drop_max_abs_diff=_max_diff(soft_out, masked_out),
            masked_fraction=fraction,
            inexact_groups=inexact,
            pruning_steps=len(callback.history_),
            guard=verdict,
        ),
        history=callback.history_,
        method=method,
    )


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def make_plan(
    model: nn.Module, steps: Sequence[Any], example_inputs: Any, ignore: Sequence[str] = ()
) -> Any:
    """A :class:`medprune.graph.PruningPlan` holding the engine's pruning steps in order."""
    from medprune.graph import PruningPlan

    plan = PruningPlan.for_inputs(model, example_inputs)
    plan.ignore = [str(name) for name in ignore]
    for step in steps:
        plan.add(step)
    return plan


def _criterion_chooser(
    spec: str, target: Target, min_channels: int, scope: str, context: MethodContext
) -> Callable[[Any], Chooser]:
    def make(graph: Any) -> Chooser:
        criterion = make_criterion(spec)

        def choose(graph: Any, step: int) -> Selection:
            scores = criterion(graph, context.calibration, task=context.task)
            return select(graph, scores, target, min_channels=min_channels, scope=scope)

        return choose

    return make


@register_method("sfp")
def sfp(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target,
    criterion: str = "l2",
    interval: int = 1,
    mask_grads: bool = False,
    reset_optimizer_state: bool | None = None,
    mask_scope: str = "producer",
    min_channels: int = 1,
    scope: str = "uniform",
    ignore: Sequence[str] = (),
) -> PruneResult:
    """Soft filter pruning: masked training with re-selection every ``interval`` epochs.

    Args:
        model: model with inputs ``(B, C, *S)``; not modified (a copy is trained and pruned).
        example_inputs: ``(B, C, *S)`` batch for tracing and the cost figures.
        context: needs ``task`` and ``train_loader``; trains for ``context.recipe.epochs`` epochs
            (0 = one selection on the given weights, then extraction).
        target: ``Target(ratio=r)`` prunes ``r`` of every group (SFP's per-layer rate);
            ``Target(macs=...)`` / ``Target(params=...)`` use a global budget (``plan_pruning``).
        criterion: filter score (``"l2"``, SFP's default; ``"l1"``; ``"fpgm:l2"`` etc.).
        interval: epochs between re-selections.
        mask_grads: zero masked channels' gradients (FPGM's released code).
        reset_optimizer_state: clear masked channels' momentum / Adam moments at each selection;
            None = same as ``mask_grads``.
        mask_scope: ``"producer"`` (SFP: filters and biases only, channels can recover) or
            ``"channel"`` (``zero_out`` at every step).
        min_channels: fewest channels any group keeps.
        scope: ``"uniform"`` (same fraction per group, as SFP; a MACs / params target is met by
            bisection on that fraction) or ``"global"`` (one ranking across groups).
        ignore: module names never pruned.

    Returns:
        PruneResult with the physically compact model, a replayable plan, one history entry per
        pruning step, and ``summary["extraction_max_abs_diff"]`` (masked vs compact output).
    """
    target = as_target(target, method="sfp")
    parse_criterion(criterion)
    validate_soft_options(interval, ignore, min_channels, scope, mask_scope)
    return run_soft(
        model,
        example_inputs,
        context=context,
        method="sfp",
        make_chooser=_criterion_chooser(criterion, target, min_channels, scope, context),
        interval=interval,
        mask_grads=mask_grads,
        reset_optimizer_state=reset_optimizer_state,
        mask_scope=mask_scope,
        ignore=ignore,
        options=dict(target=target, criterion=criterion, min_channels=min_channels, scope=scope),
    )


@register_method("fpgm_soft")
def fpgm_soft(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target,
    distance: str = "l2",
    interval: int = 1,
    mask_grads: bool = True,
    reset_optimizer_state: bool | None = None,
    mask_scope: str = "producer",
    min_channels: int = 1,
    scope: str = "uniform",
    ignore: Sequence[str] = (),
) -> PruneResult:
    """FPGM's soft schedule: :func:`sfp` with the geometric-median criterion.

    Filters with the smallest sum of distances to the other filters of their group are masked
    (``distance``: ``"l2"`` paper default, ``"l1"``, ``"cos"``). ``mask_grads=True`` by default,
    as in FPGM's released training loop. Other arguments as in :func:`sfp`.
    """
    target = as_target(target, method="fpgm_soft")
    if distance not in ("l2", "l1", "cos"):
        raise ConfigError(f"distance must be one of 'l2', 'l1', 'cos'; got {distance!r}.")
    validate_soft_options(interval, ignore, min_channels, scope, mask_scope)
    return run_soft(
        model,
        example_inputs,
        context=context,
        method="fpgm_soft",
        make_chooser=_criterion_chooser(f"fpgm:{distance}", target, min_channels, scope, context),
        interval=interval,
        mask_grads=mask_grads,
        reset_optimizer_state=reset_optimizer_state,
        mask_scope=mask_scope,
        ignore=ignore,
        options=dict(target=target, distance=distance, min_channels=min_channels, scope=scope),
    )
