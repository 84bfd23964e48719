"""The training / fine-tuning recipe shared by baseline training and every pruning method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medprune.errors import ConfigError

OptimizerName = Literal["sgd", "adam", "adamw"]
SchedulerName = Literal["none", "cosine", "step"]


@dataclass(frozen=True)
class TrainRecipe:
    """How to train or fine-tune: identical for every method in a comparison.

    Attributes:
        epochs: passes over the training loader (0 = no training).
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"``.
        lr: initial learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        scheduler: ``"none"``, ``"cosine"`` (to 0 over ``epochs``) or ``"step"`` (x``gamma`` every
            ``step_size`` epochs).
        step_size: epochs between decays for ``"step"``.
        gamma: decay factor for ``"step"``.
        max_steps_per_epoch: cap on batches per epoch (None = whole loader); for quick runs.
        grad_clip: clip the gradient norm to this value (None = off).
    """

    epochs: int = 5
    optimizer: OptimizerName = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: SchedulerName = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"epochs must be an integer >= 0; got {self.epochs!r}.")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ConfigError(
                f"optimizer must be one of 'sgd', 'adam', 'adamw'; got {self.optimizer!r}."
            )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number; got {self.lr!r}.")
        if self.scheduler not in ("none", "cosine", "step"):
            raise ConfigError(
                f"scheduler must be one of 'none', 'cosine', 'step'; got {self.scheduler!r}."
            )
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be a number >= 0; got {self.weight_decay!r}.")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must be a number in [0, 1); got {self.momentum!r}.")
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise ConfigError(f"step_size must be an integer >= 1; got {self.step_size!r}.")
        if not (isinstance(self.gamma, (int, float)) and self.gamma > 0):
            raise ConfigError(f"gamma must be a positive number; got {self.gamma!r}.")
        if self.grad_clip is not None and not (
            isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0
        ):
            raise ConfigError(
                f"grad_clip must be a positive number or None; got {self.grad_clip!r}."
            )
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(
                f"max_steps_per_epoch must be >= 1 or None; got {self.max_steps_per_epoch!r}."
            )
