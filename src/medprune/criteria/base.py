"""The :class:`Criterion` base class, the criterion registry and coupled-group score combination.

A criterion maps a pruning graph (and, for data-driven criteria, calibration batches) to one
importance score per channel of every prunable group: ``{group.key: scores (n_channels,)}``,
higher = more important. :meth:`Criterion.__call__` owns the contract: every score vector has
shape ``(group.n_channels,)``, is finite, detached and floating point, and the model's parameters,
buffers and ``training`` flag are the same afterwards as before.

Coupled groups. A group may hold several *members*: several producers whose outputs are tied
(the channels of a residual stream are produced by every conv that feeds the additions) or, for
data-driven criteria, several activation sites. Each member yields its own ``(n_channels,)``
vector; the group's score is obtained in two steps, both configurable on every criterion:

1. ``coupling_norm`` normalises each member first so that members on different scales count
   alike: ``"mean"`` (divide by the member's mean absolute score, default), ``"max"`` (divide by
   its maximum absolute score) or ``"none"``.
2. ``coupling_reduce`` combines the normalised members channel by channel: ``"mean"``
   (default), ``"sum"``, ``"max"`` or ``"prod"``.

A group with a single member is returned unchanged (no normalisation), so single-producer scores
keep their natural units (an L1 norm, an average rank).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn

from medprune.errors import ConfigError, ShapeMismatchError, UnsupportedOpError
from medprune.graph.group import PruningGroup
from medprune.registry import Registry

logger = logging.getLogger(__name__)

CouplingNorm = Literal["mean", "max", "none"]
CouplingReduce = Literal["mean", "sum", "max", "prod"]
_NORMS = ("mean", "max", "none")
_REDUCES = ("mean", "sum", "max", "prod")


class GraphLike(Protocol):
    """What a criterion needs from a :class:`medprune.graph.PruningGraph`."""

    model: nn.Module

    def prunable_groups(self) -> list[PruningGroup]: ...


def combine_members(
    members: Sequence[torch.Tensor],
    *,
    norm: CouplingNorm = "mean",
    reduce: CouplingReduce = "mean",
) -> torch.Tensor:
    """Combine per-member scores of one coupled group into one score per channel.

    Args:
        members: one ``(n_channels,)`` tensor per member (producer or activation site).
        norm: per-member normalisation, see the module docstring.
        reduce: how normalised members are combined.

    Returns:
        ``(n_channels,)`` float tensor. A single member is returned as is.
    """
    if not members:
        raise ConfigError("combine_members needs at least one member score vector; got none.")
    if len(members) == 1:
        return members[0].float()
    stacked = torch.stack([m.float() for m in members])  # (M, n)
    if norm == "mean":
        stacked = stacked / stacked.abs().mean(1, keepdim=True).clamp_min(1e-12)
    elif norm == "max":
        stacked = stacked / stacked.abs().amax(1, keepdim=True).clamp_min(1e-12)
    if reduce == "mean":
        return stacked.mean(0)
    if reduce == "sum":
        return stacked.sum(0)
    if reduce == "max":
        return stacked.amax(0)
    return stacked.prod(0)


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """A cheap identity of the model's state: tensor identities, shapes, versions and sums."""
    items = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        items.append((name, tuple(t.shape), t._version, float(t.detach().double().sum())))
    modes = tuple(m.training for m in model.modules())
    return tuple(items), modes


class Criterion:
    """Base class of importance criteria; subclasses implement :meth:`compute`.

    Weight-only criteria usually override :meth:`member_scores` (one ``(n_channels,)`` vector per
    producer of the group) and inherit :meth:`compute`. Data-driven criteria derive from
    :class:`medprune.criteria.streaming.StreamingCriterion`.

    Args:
        coupling_norm: per-member normalisation of coupled groups (``"mean"``, ``"max"``,
            ``"none"``).
        coupling_reduce: how members are combined (``"mean"``, ``"sum"``, ``"max"``, ``"prod"``).
    """

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    needs_grad: ClassVar[bool] = False

    def __init__(
        self, *, coupling_norm: CouplingNorm = "mean", coupling_reduce: CouplingReduce = "mean"
    ) -> None:
        check_choice("coupling_norm", coupling_norm, _NORMS)
        check_choice("coupling_reduce", coupling_reduce, _REDUCES)
        self.coupling_norm = coupling_norm
        self.coupling_reduce = coupling_reduce

    # -- to override ---------------------------------------------------------------------------
    def member_scores(self, group: PruningGroup) -> list[torch.Tensor]:
        """One ``(n_channels,)`` score vector per member of ``group`` (weight-only criteria)."""
        raise UnsupportedOpError(f"criterion {self.name!r} does not implement member_scores().")

    def compute(
        self,
        groups: list[PruningGroup],
        model: nn.Module,
        calibration: Iterable[Any] | None,
        task: Any,
    ) -> dict[str, torch.Tensor]:
        """Scores for ``groups``; the default combines :meth:`member_scores` per group."""
        return {g.key: self.combine(self.member_scores(g)) for g in groups}

    # -- shared ----------------------------------------------------------------------------------
    def combine(self, members: Sequence[torch.Tensor]) -> torch.Tensor:
        """Combine member scores with this criterion's coupling settings."""
        return combine_members(members, norm=self.coupling_norm, reduce=self.coupling_reduce)

    def __call__(
        self, graph: GraphLike, calibration: Iterable[Any] | None = None, *, task: Any = None
    ) -> dict[str, torch.Tensor]:
        """Score every prunable group of ``graph``.

        Args:
            graph: a :class:`medprune.graph.PruningGraph` (anything with ``.model`` and
                ``.prunable_groups()``).
            calibration: iterable of ``(inputs, targets)`` batches (or bare input tensors for
                label-free criteria); required when ``needs_data``.
            task: optional task whose ``loss(outputs, targets)`` gradient criteria use.

        Returns:
            ``{group.key: scores}`` with float32 scores ``(group.n_channels,)``, higher = more
            important.
        """
        if self.needs_data and calibration is None:
            raise ConfigError(
                f"criterion {self.name!r} is data-driven and needs calibration batches; pass "
                "calibration=<loader of (inputs, targets)> or use a weight-only criterion "
                "(l1, l2, fpgm, bn_scale, random)."
            )
        model = graph.model
        groups = list(graph.prunable_groups())
        for g in groups:
            if g._model is None:
                g.bind(model)
        before = _fingerprint(model)
        scores = self.compute(groups, model, calibration, task)
        if _fingerprint(model) != before:
            raise RuntimeError(
                f"criterion {self.name!r} modified the model (parameters, buffers or train/eval "
                "mode); criteria must leave the model untouched."
            )
        return self._check(groups, scores)

    def _check(
        self, groups: list[PruningGroup], scores: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for g in groups:
            if g.key not in scores:
                raise RuntimeError(
                    f"criterion {self.name!r} returned no score for group {g.key!r}."
                )
            s = scores[g.key]
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != (g.n_channels,):
                shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ShapeMismatchError(
                    f"criterion {self.name!r} returned scores of shape {shape} for group "
                    f"{g.key!r}; expected ({g.n_channels},)."
                )
            s = s.detach().float().cpu()
            if not torch.isfinite(s).all():
                raise RuntimeError(
                    f"criterion {self.name!r} returned non-finite scores for group {g.key!r}: "
                    f"{s.tolist()[:8]}..."
                )
            out[g.key] = s
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise :class:`ConfigError` when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}."
        )


def producer_weights(group: PruningGroup, criterion: str) -> list[tuple[str, torch.Tensor]]:
    """``(module_name, filters (n_channels, fan))`` for every producer of ``group``."""
    found = [(s.module_name, group.gather(s)) for s in group.members("out", "weight")]
    if not found:
        raise UnsupportedOpError(
            f"criterion {criterion!r} needs producer weights but group {group.key!r} has no "
            "'out' weight slice; ignore the group (ignore=[...]) or use a data-driven criterion."
        )
    return found


CRITERIA: Registry[type[Criterion]] = Registry("criterion")


def register_criterion(
    name: str, *, override: bool = False
) -> Callable[[type[Criterion]], type[Criterion]]:
    """Class decorator registering a :class:`Criterion` subclass under ``name``."""

    def decorator(cls: type[Criterion]) -> type[Criterion]:
        CRITERIA.add(name, cls, override=override)
        cls.name = name
        return cls

    return decorator


def get_criterion(name: str, **kwargs: Any) -> Criterion:
    """An instance of the criterion called ``name`` configured with ``kwargs``.

    Raises:
        ConfigError: unknown name (with a did-you-mean hint) or an invalid keyword argument.
    """
    cls = CRITERIA.get(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"invalid arguments for criterion {name!r}: {e}") from None


def list_criteria(pattern: str = "*") -> list[str]:
    """Registered criterion names matching the shell-style ``pattern``."""
    return CRITERIA.list(pattern)
