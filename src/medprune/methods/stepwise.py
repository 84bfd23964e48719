"""The score -> plan -> prune -> fine-tune loop shared by the ``oneshot`` and ``iterative`` methods.

Each step traces the current model, scores its groups, plans the removal that brings the model to
the step's cumulative fraction of the *original* cost, removes the channels physically and
fine-tunes with the context's recipe. With a guard (``context.guard.check(model) -> (ok, info)``)
a rejected step is retried from the pre-step copy with half the step's extra removal, at most
``max_guard_retries`` times; if every retry is rejected the pre-step model is kept and the
schedule stops. Every attempt is recorded in the history.

With ``context.checkpoint_dir`` each fine-tuning is a resumable phase
``finetune_step<i>_attempt<retry>``; the scores, plans and guard verdicts in between are recomputed
from the restored weights (deterministic), so a rerun skips the finished fine-tunings.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medprune.criteria.base import Criterion, get_criterion
from medprune.criteria.streaming import check_task
from medprune.errors import ConfigError
from medprune.methods import _training as tr
from medprune.methods.base import MethodContext, PruneResult, Target
from medprune.methods.plan import plan_pruning

logger = logging.getLogger(__name__)


def resolve_criterion(
    criterion: str | Criterion, criterion_kwargs: Mapping[str, Any] | None
) -> Criterion:
    """A criterion instance from a name (+ keyword arguments) or an instance."""
    if isinstance(criterion, Criterion):
        if criterion_kwargs:
            raise ConfigError("criterion_kwargs only apply when criterion is given by name.")
        return criterion
    return get_criterion(criterion, **dict(criterion_kwargs or {}))


def validate_context(context: MethodContext, crit: Criterion, *, method: str) -> None:
    """Fail before any tracing or training when the context cannot run the method."""
    if crit.needs_data and context.calibration is None:
        raise ConfigError(
            f"{method}: criterion {crit.name!r} needs calibration batches; set "
            "MethodContext(calibration=...) or choose a weight-only criterion."
        )
    check_task(context.task)
    if context.recipe.epochs > 0:
        tr.require(context, "train_loader", "task", method=method)
        if not hasattr(context.task, "check_targets"):
            raise ConfigError(
                f"{method}: fine-tuning needs a medprune task (ClassificationTask / "
                f"SegmentationTask, for its metrics and target checks); got a "
                f"{type(context.task).__name__}. A plain loss callable as task= only drives the "
                "criterion: drop fine_tune= or pass a task."
            )


def _new_plan(
    model: nn.Module, steps: list[Any], example_inputs: Any, ignore: Sequence[str]
) -> Any:
    """The replayable plan of the accepted steps (``model`` = the unpruned base)."""
    from medprune.graph import PruningPlan

    plan = PruningPlan.for_inputs(model, example_inputs)
    plan.ignore = [i for i in ignore if isinstance(i, str)]
    for step in steps:
        plan.add(step)
    return plan


def _step_target(target: Target, attempt: float, prev: float, base: Any, current: Any) -> float:
    """Fraction of the *current* model to remove so that ``attempt`` of the original is gone."""
    if target.kind in ("ratio", "latency"):  # latency: each step's planner measures its cut
        return 1.0 - (1.0 - attempt) / (1.0 - prev)
    b, c = getattr(base, target.kind), getattr(current, target.kind)
    return 1.0 - b * (1.0 - attempt) / c if c else 0.0


def run_steps(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    criterion: str | Criterion,
    target: Target,
    fractions: Sequence[float],
    method: str,
    criterion_kwargs: Mapping[str, Any] | None = None,
    ignore: Sequence[str] = (),
    plan_kwargs: Mapping[str, Any] | None = None,
    max_guard_retries: int = 3,
    score_ema: float | None = None,
) -> PruneResult:
    """Prune ``model`` (a copy) along cumulative ``fractions`` of ``target``; see the module doc.

    ``score_ema``: when set, the scores of step ``i`` are ``ema * s_(i-1) + (1 - ema) * s_i`` on
    the channels that survived step ``i - 1`` (Molchanov et al. 2019 average Taylor scores
    across pruning steps with 0.9). A group whose key or size changed starts afresh.
    """
    from medprune.graph import build_graph, prune_channels

    crit = resolve_criterion(criterion, criterion_kwargs)
    validate_context(context, crit, method=method)
    plan_kwargs = dict(plan_kwargs or {})
    plan_kwargs.setdefault("ignore", tuple(ignore))
    base_model = model
    model = tr.working_copy(model, context.device)
    inputs = tr.to_device(example_inputs, context.device)
    before = tr.cost(model, inputs)
    tr.set_guard_reference(context, model)
    settings = dict(  # what the fine-tunings start from, for their checkpoint fingerprints
        method=method, criterion=crit.name, criterion_kwargs=criterion_kwargs, target=target,
        fractions=list(fractions), ignore=list(ignore), plan_kwargs=plan_kwargs,
        score_ema=score_ema,
    )  # fmt: skip
    if score_ema is not None and not 0.0 <= float(score_ema) < 1.0:
        raise ConfigError(f"score_ema must be in [0, 1) or None; got {score_ema!r}.")
    history: list[dict[str, Any]] = []
    steps: list[Any] = []
    kept_scores: dict[str, torch.Tensor] = {}  # averaged scores of the surviving channels
    base_cost = None
    prev = 0.0
    for i, goal in enumerate(fractions):
        attempt, accepted = goal, False
        for retry in range(max_guard_retries + 1):
            candidate = copy.deepcopy(model) if context.guard is not None else model
            t0 = time.perf_counter()
            graph = build_graph(candidate, inputs, ignore=tuple(ignore))
            current = graph.estimate({})
            base_cost = base_cost if base_cost is not None else current
            step_fraction = _step_target(target, attempt, prev, base_cost, current)
            record: dict[str, Any] = {
                "step": i,
                "attempt": retry,
                "goal": attempt,
                "step_fraction": step_fraction,
            }
            if step_fraction <= 1e-6:
                record["skipped"] = "already at the goal"
                history.append(record)
                accepted = True
                break
            step_t = Target(**{target.kind: min(step_fraction, 0.999)})
            scores = crit(graph, context.calibration, task=context.task)
            if score_ema is not None:
                scores = blend_scores(scores, kept_scores, float(score_ema))
            prune_idx = plan_pruning(graph, scores, step_t, **plan_kwargs)
            if target.kind == "latency":  # predicted vs measured cuts of the planner
                from medprune.latency.planner import last_report

                record["latency"] = last_report()
            step = prune_channels(candidate, graph, prune_idx)
            record["channels_removed"] = int(sum(len(v) for v in prune_idx.values()))
            record["prune_seconds"] = time.perf_counter() - t0
            record["finetune"] = tr.fit(
                candidate, context, phase=f"finetune_step{i}_attempt{retry}", options=settings
            )
            macs, params = tr.cost(candidate, inputs)
            record.update(macs=macs, params=params)
            record["macs_removed"] = 1.0 - macs / before[0] if before[0] else 0.0
            record["params_removed"] = 1.0 - params / before[1] if before[1] else 0.0
            verdict = tr.check_guard(context, candidate, method=method, step=i)
            record["guard"] = verdict
            history.append(record)
            context.emit({"event": "step", "method": method, **record})
            if verdict is None or verdict["ok"]:
                model, accepted = candidate, True
                steps.append(step)
                if score_ema is not None:
                    kept_scores = surviving_scores(scores, prune_idx)
                break
            attempt = prev + (attempt - prev) / 2.0
        if not accepted:
            history.append({"step": i, "rejected": True, "kept": "pre-step model"})
            logger.warning("%s: guard rejected step %d %d times; stopping", method, i, retry + 1)
            break
        prev = attempt
    after = tr.cost(model, inputs)
    summary = tr.summary(
        before,
        after,
        criterion=crit.name,
        target={target.kind: target.value},
        steps=len(steps),
        guard_backoffs=sum(1 for h in history if h.get("attempt", 0) > 0),
    )
    if target.kind == "latency":
        summary["latency"] = latency_summary(history, goal=target.value)
    return PruneResult(
        model=model,
        plan=_new_plan(base_model, steps, inputs, ignore),
        summary=summary,
        history=history,
        method=method,
    )


def latency_summary(history: list[dict[str, Any]], *, goal: float) -> dict[str, Any]:
    """What a latency target achieved, from the planner's interleaved measurements of the
    accepted steps: ``measured_cut`` (steps compound: ``1 - prod(1 - cut_i)``), ``base_ms`` /
    ``pruned_ms`` (the unpruned model's and the final model's medians), ``goal`` and ``missed``
    (a step's closest measured cut was farther from its goal than the tolerance). Empty values
    when the planner did not measure (``calibrate=0``)."""
    accepted = [
        h["latency"]
        for h in history
        if "latency" in h and (h.get("guard") is None or h["guard"].get("ok", True))
    ]
    measured = [r for r in accepted if "measured" in r]
    if not measured:
        return {"goal": goal, "measured_cut": None, "base_ms": None, "pruned_ms": None,
                "missed": None}  # fmt: skip
    kept = 1.0
    for r in measured:
        kept *= 1.0 - r["measured"]
    return {
        "goal": goal,
        "measured_cut": 1.0 - kept,
        "base_ms": measured[0]["measured_base_ms"],
        "pruned_ms": measured[-1]["measured_pruned_ms"],
        "missed": any(r.get("missed") for r in measured),
    }


def blend_scores(
    scores: Mapping[str, torch.Tensor], previous: Mapping[str, torch.Tensor], ema: float
) -> dict[str, torch.Tensor]:
    """``ema * previous + (1 - ema) * scores`` per group whose previous scores line up
    (same key, same channel count); other groups keep this step's scores."""
    out = {}
    for key, value in scores.items():
        prev = previous.get(key)
        if prev is not None and prev.shape == value.shape:
            value = ema * prev.to(value) + (1.0 - ema) * value
        out[key] = value
    return out


def surviving_scores(
    scores: Mapping[str, torch.Tensor], removed: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Scores of the channels each group keeps, in their new order (``(n_kept,)`` per group)."""
    out = {}
    for key, value in scores.items():
        keep = torch.ones(value.shape[0], dtype=torch.bool)
        idx = removed.get(key)
        if idx is not None and len(idx):
            keep[torch.as_tensor(idx, dtype=torch.long)] = False
        out[key] = value.detach()[keep].clone()
    return out


def as_target(target: Target | Mapping[str, float] | None, **kwargs: Any) -> Target:
    """A :class:`Target` from an instance, a ``{"macs": 0.5}`` mapping or keyword arguments."""
    if isinstance(target, Target):
        return target
    if isinstance(target, Mapping):
        return Target(**dict(target))
    given = {k: v for k, v in kwargs.items() if v is not None}
    return Target(**given)
