"""Shared nouns of the pruning methods: the budget :class:`Target`, :class:`PruneResult` and the
method registry.

A *method* is a function ``(model, example_inputs, *, context: MethodContext, **options) ->
PruneResult`` registered under a snake-case name (``"oneshot"``, ``"iterative"``, ``"sfp"``,
``"fpgm_soft"``, ``"mfp"``, ``"sauron"``, ``"lottery"``). Every method gets the same
:class:`MethodContext` so that a comparison runs them under identical conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.registry import Registry
from medprune.tasks.recipe import TrainRecipe


@dataclass(frozen=True)
class Target:
    """What to remove: a fraction of MACs, of parameters, of measured latency, or a uniform
    channel ratio per group.

    Exactly one of ``macs``, ``params``, ``ratio`` or ``latency`` is set, each a fraction in
    ``[0, 1)`` (``Target(macs=0.5)`` = remove 50% of the MACs); ``latency`` must be in ``(0, 1)``
    (``Target(latency=0.5)`` = halve the measured latency, see :mod:`medprune.latency`).
    """

    macs: float | None = None
    params: float | None = None
    ratio: float | None = None
    latency: float | None = None

    def _given(self) -> dict[str, float]:
        pairs = (("macs", self.macs), ("params", self.params), ("ratio", self.ratio),
                 ("latency", self.latency))  # fmt: skip
        return {k: v for k, v in pairs if v is not None}

    def __post_init__(self) -> None:
        given = self._given()
        if len(given) != 1:
            raise ConfigError(
                "Target needs exactly one of macs=, params=, ratio=, latency=; got "
                f"{given or 'none'}."
            )
        ((name, value),) = given.items()
        if name == "latency":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0.0 < float(value) < 1.0)
            ):
                raise ConfigError(
                    "Target latency must be a fraction in (0, 1) (0.5 = remove half the measured "
                    f"latency); got {value!r}."
                )
        elif not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"Target {name} must be a fraction in [0, 1); got {value!r}.")

    @property
    def kind(self) -> str:
        """``"macs"``, ``"params"``, ``"ratio"`` or ``"latency"``."""
        return next(iter(self._given()))

    @property
    def value(self) -> float:
        return float(next(iter(self._given().values())))


class Guard(Protocol):
    """Accepts or rejects a pruned model (e.g. important-class false negatives within a tolerance)."""

    def check(self, model: nn.Module) -> tuple[bool, dict[str, Any]]: ...


@dataclass
class MethodContext:
    """Everything a method may use, identical across methods in one comparison.

    Attributes:
        task: a task object from :mod:`medprune.tasks` (loss and metrics).
        train_loader: yields ``(inputs, targets)`` for fine-tuning / training-time methods.
        val_loader: validation batches (Sauron needs it; guards use it).
        calibration: class-balanced batches for data-driven criteria.
        recipe: the fine-tuning recipe.
        seed: the seed every method starts from.
        device: torch device.
        guard: optional acceptance check applied after each pruning step.
        progress: show progress bars.
        log: callable receiving one dict per event (step finished, criterion chosen, ...).
        checkpoint_dir: folder for resumable training (one per method run). When set, every
            training phase of the method (``"sauron"``, ``"sfp"``, ``"finetune_step1_attempt0"``,
            ``"lottery_round2_attempt0"``...) writes ``<checkpoint_dir>/<phase>.pt`` atomically
            after each epoch; calling the method again with the same folder skips finished phases
            and continues an interrupted one from its last epoch (the same final weights on CPU).
            A file of another configuration raises :class:`~medprune.errors.CheckpointError`.
            The files are kept until the caller deletes the folder. None: no checkpoints.
    """

    task: Any = None
    train_loader: Iterable[Any] | None = None
    val_loader: Iterable[Any] | None = None
    calibration: Iterable[Any] | None = None
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    seed: int = 0
    device: torch.device | str = "cpu"
    guard: Guard | None = None
    progress: bool = True
    log: Callable[[dict[str, Any]], None] | None = None
    checkpoint_dir: Path | str | None = None

    def emit(self, event: dict[str, Any]) -> None:
        if self.log is not None:
            self.log(event)


@dataclass
class PruneResult:
    """What every method returns.

    Attributes:
        model: the pruned, ordinary ``nn.Module`` (physically smaller).
        plan: the replayable :class:`medprune.graph.PruningPlan` (None for unstructured lottery masks).
        summary: before/after figures: ``macs_before``, ``macs_after``, ``params_before``,
            ``params_after``, ``macs_removed`` (fraction), ``params_removed`` (fraction), and
            method-specific entries.
        history: one dict per step / epoch / round.
        method: registry name of the method.
        masks: unstructured masks ``{parameter name: bool tensor}`` (lottery only).
    """

    model: nn.Module
    plan: Any
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    method: str = ""
    masks: dict[str, torch.Tensor] | None = None


MethodFn = Callable[..., PruneResult]
METHODS: Registry[MethodFn] = Registry("method")


def register_method(name: str, *, override: bool = False) -> Callable[[MethodFn], MethodFn]:
    """Register a pruning method under ``name``."""
    return METHODS.register(name, override=override)


def get_method(name: str) -> MethodFn:
    """The method called ``name`` (ConfigError with did-you-mean otherwise)."""
    return METHODS.get(name)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names."""
    return METHODS.list(pattern)
