"""The opening paragraph of a report: which method kept the rare class best at each budget.

One sentence group per budget (target fraction), in increasing order, worded the same way every
time so two reports can be diffed::

    At 50% MACs removed, oneshot (beta_rank) kept malignant recall best (0.786 ± 0.020 vs base
    0.690; finetune_only (control) 0.738); oneshot (l1) was second (0.683 ± 0.010). The
    difference is larger than the seed spread (mean ± std over 3 seeds).

The figure is the minority class's recall (classification) or its Dice (segmentation, a
foreground class). The caveat compares the gap between the first two methods with the seed
spread (several seeds: ``sqrt(std_1**2 + std_2**2)``) or, with one seed, with one test-set
standard error of the difference (recall: binomial, ``sqrt(p1 q1 / n + p2 q2 / n)`` over the
``n`` test images of the class; Dice: the per-image spread of each model over the images where
the class occurs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from medprune.report.records import CONTROL_NAME, Row, class_support

KIND_WORDS = {"macs": "MACs", "params": "parameters", "ratio": "channels"}


SHORTFALL = 0.05  # a run more than 5 points short of its budget is named as such


def _name(row: Row, kind: str, target: float) -> str:
    """The row's label, plus what it really removed when it fell short of the budget."""
    achieved = row.mean(f"{kind}_removed") if kind in ("macs", "params") else None
    if achieved is not None and achieved < target - SHORTFALL:
        return f"{row.label} (only {achieved:.0%} removed)"
    return row.label


def _value(row: Row, cls: str) -> str:
    mean, std = row.class_mean(cls), row.class_std(cls)
    text = f"{mean:.3f}"
    return text + (f" ± {std:.3f}" if std else "")  # no spread shown for one seed or none


def _budget_kind(rows: Sequence[Row]) -> str:
    kinds = [r.target_kind for r in rows if not r.masked] or [r.target_kind for r in rows]
    return max(dict.fromkeys(kinds), key=kinds.count)  # most common, first seen on ties


def _references(base: Row | None, control: Row | None, cls: str) -> str:
    parts = []
    if base is not None and base.class_mean(cls) is not None:
        parts.append(f"base {base.class_mean(cls):.3f}")
    if control is not None and control.class_mean(cls) is not None:
        parts.append(f"{control.label} {_value(control, cls)}")
    return ("vs " + "; ".join(parts)) if parts else ""


def _caveat(best: Row, second: Row, cls: str, task: str, support: int | None) -> str:
    """How the gap between ``best`` and ``second`` compares with the noise."""
    gap = (best.class_mean(cls) or 0.0) - (second.class_mean(cls) or 0.0)
    seeds = min(len(best.per_class.get(cls, [])), len(second.per_class.get(cls, [])))
    if seeds > 1:
        spread = math.hypot(best.class_std(cls) or 0.0, second.class_std(cls) or 0.0)
        where = "within" if gap <= spread else "larger than"
        return f"The difference is {where} the seed spread (mean ± std over {seeds} seeds)."
    se = _standard_error(best, second, cls, task, support)
    if se is None:
        return "With 1 seed and no test-set spread recorded, treat small differences as noise."
    where = "within" if gap <= se else "larger than"
    if task == "segmentation":
        n_text = f"{support} test images containing {cls}"
    else:
        n_text = f"{support} {cls} test images"
    return f"The difference is {where} one test-set standard error ({se:.3f}; 1 seed, {n_text})."


def _standard_error(
    best: Row, second: Row, cls: str, task: str, support: int | None
) -> float | None:
    if not support:
        return None
    if task == "segmentation":
        sds = [r.class_sd.get(cls) or [] for r in (best, second)]
        if not all(sds):
            return None
        return math.sqrt((sds[0][0] ** 2 + sds[1][0] ** 2) / support)
    p1, p2 = best.class_mean(cls) or 0.0, second.class_mean(cls) or 0.0
    return math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / support)


def _budget_sentence(
    target: float,
    group: Sequence[Row],
    *,
    base: Row | None,
    control: Row | None,
    cls: str,
    task: str,
    support: int | None,
) -> str:
    stat = "Dice" if task == "segmentation" else "recall"
    kind = _budget_kind(group)
    if kind == "latency":  # a goal the planner aimed at; the measured cut is in the table
        opening = f"At a {target:.0%} latency-cut target"
    else:
        opening = f"At {target:.0%} {KIND_WORDS.get(kind, kind)} removed"
    left_out = [r for r in group if r.masked and kind == "macs"]
    ranked = sorted(
        (r for r in group if r.class_mean(cls) is not None and not any(r is x for x in left_out)),
        key=lambda r: -(r.class_mean(cls) or 0.0),
    )  # stable: equal figures keep the grid order
    tail = ""
    if left_out:
        names = ", ".join(r.label for r in left_out)
        tail += f" Left out: {names} (masks zero weights but keep the dense MACs)."
    failed = [r.label for r in group if r.failed and r.class_mean(cls) is None]
    if failed:
        tail += f" Failed: {', '.join(failed)}."
    refs = _references(base, control, cls)
    return (
        _ranking(opening, ranked, refs, cls, stat, task, support, kind=kind, target=target) + tail
    )


def _ranking(
    opening: str,
    ranked: Sequence[Row],
    refs: str,
    cls: str,
    stat: str,
    task: str,
    support: int | None,
    *,
    kind: str,
    target: float,
) -> str:
    """The sentences of one budget: the leader(s), the runner-up, the noise caveat."""
    if not ranked:
        return f"{opening}, no run has a {cls} {stat}."
    best = ranked[0]
    if len(ranked) == 1:
        refs_text = f" ({refs})" if refs else ""
        return (
            f"{opening}, {_name(best, kind, target)} kept {cls} {stat} at {_value(best, cls)}"
            f"{refs_text}.{_collapse([best], cls, task)}"
        )
    refs_text = f" {refs}" if refs else ""
    top = f"{best.class_mean(cls):.3f}"
    tied = [r for r in ranked if f"{r.class_mean(cls):.3f}" == top]
    if len(tied) == len(ranked) and not best.class_mean(cls):
        return (
            f"{opening}, no method found the {cls} class ({cls} {stat} 0.000 for every "
            f"method{refs_text}), so nothing here ranks them on it."
        )
    if len(tied) > 1:
        names = _join([_name(r, kind, target) for r in tied])
        return (
            f"{opening}, {names} tied for the best {cls} {stat} ({top}{refs_text})."
            f"{_collapse(tied, cls, task)}"
        )
    second = ranked[1]
    return (
        f"{opening}, {_name(best, kind, target)} kept {cls} {stat} best "
        f"({_value(best, cls)}{refs_text}); {_name(second, kind, target)} was second "
        f"({_value(second, cls)}). {_caveat(best, second, cls, task, support)}"
        f"{_collapse([best], cls, task)}"
    )


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


COLLAPSED = 0.05  # another class's recall below this: the model hardly ever predicts it


def _collapse(leaders: Sequence[Row], cls: str, task: str) -> str:
    """A warning when leaders bought their rare-class recall by (almost) never predicting another
    class (classification only: everything called "pneumonia" gives pneumonia recall 1.0)."""
    if task == "segmentation":
        return ""
    names, lost = [], {}
    for row in leaders:
        low = {c: row.class_mean(c) or 0.0 for c in row.per_class if c != cls}
        low = {c: v for c, v in low.items() if v < COLLAPSED}
        if low:
            names.append(row.label)
            lost.update(low)
    if not names:
        return ""
    if len(names) == 1:
        what = ", ".join(f"{c} recall {v:.3f}" for c, v in lost.items())
        return f" Caution: {names[0]} almost never predicts the other class ({what})."
    return f" Caution: {_join(names)} almost never predict {_join(list(lost))}."


def rare_class_summary(
    base_record: Mapping[str, Any] | None,
    base: Row | None,
    rows: Sequence[Row],
    task: str,
    minority: str | None,
) -> str | None:
    """One paragraph naming, per budget, the method that kept the rare class best.

    Args:
        base_record: the ``kind: base`` record (test-set size of the rare class).
        base: the aggregated base row; ``rows``: the other rows (see :func:`aggregate`).
        task: ``"classification"`` or ``"segmentation"``.
        minority: the rare class's name (:func:`minority_class`).

    Returns:
        The paragraph, or None when there is no rare class or no pruning run.
    """
    if minority is None:
        return None
    control = next((r for r in rows if r.name == CONTROL_NAME), None)
    budgets: dict[float, list[Row]] = {}
    for row in rows:
        if row.name != CONTROL_NAME and row.kind != "base":
            budgets.setdefault(row.target, []).append(row)
    if not budgets:
        return None
    support = class_support(base_record, minority)
    sentences = [
        _budget_sentence(
            target, group, base=base, control=control, cls=minority, task=task, support=support
        )
        for target, group in sorted(budgets.items())
    ]
    return " ".join(sentences)
