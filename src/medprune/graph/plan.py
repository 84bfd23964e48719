"""Replayable pruning plans: a pruned model is saved as ``state_dict`` + plan, never pickled.

A :class:`PruningPlan` is the list of steps that produced a pruned model, each step a mapping
``{group_key: sorted removed channels}``, plus the example input shapes and the model class.
Group keys derive from module names and channel offsets, so :func:`apply_plan` reproduces the
pruned architecture on a fresh copy of the base model; then ``load_state_dict`` restores weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import CheckpointError, ConfigError
from medprune.graph.pruning_graph import build_graph
from medprune.graph.surgery import PruningStep, prune_channels

__all__ = ["PruningPlan", "apply_plan"]

PLAN_VERSION = 1


@dataclass
class PruningPlan:
    """Steps of channel removal that can be replayed on the base architecture.

    Attributes:
        steps: each ``{group_key: sorted removed group channels}``.
        input_shapes: shapes of the example inputs (``[[1, 3, 64, 64]]``).
        model_class: class name of the base model (checked on replay).
        input_dtypes: dtype names of the example inputs.
        ignore: module names kept out of pruning when the plan was made.
    """

    steps: list[dict[str, list[int]]] = field(default_factory=list)
    input_shapes: list[list[int]] = field(default_factory=list)
    model_class: str = ""
    input_dtypes: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)

    @classmethod
    def for_inputs(cls, model: nn.Module, example_inputs: Any) -> PruningPlan:
        """An empty plan recording the model class and the example inputs' shapes and dtypes."""
        inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        return cls(
            input_shapes=[list(t.shape) for t in inputs],
            model_class=type(model).__name__,
            input_dtypes=[str(t.dtype).replace("torch.", "") for t in inputs],
        )

    def add(self, step: PruningStep | dict[str, Any]) -> None:
        """Append a step (a :class:`PruningStep` or a ``{key: indices}`` mapping)."""
        removed = step.removed if isinstance(step, PruningStep) else step
        self.steps.append({k: sorted(int(i) for i in v) for k, v in removed.items() if len(v)})

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Zero tensors of the recorded shapes and dtypes."""
        dtypes = self.input_dtypes or ["float32"] * len(self.input_shapes)
        return tuple(
            torch.zeros(shape, dtype=getattr(torch, dt))
            for shape, dt in zip(self.input_shapes, dtypes, strict=False)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "model_class": self.model_class,
            "input_shapes": self.input_shapes,
            "input_dtypes": self.input_dtypes,
            "ignore": self.ignore,
            "steps": self.steps,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PruningPlan:
        """Read a plan written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read pruning plan {str(path)!r}: {e}") from e
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruningPlan:
        if not isinstance(data, dict) or "steps" not in data:
            raise CheckpointError(f"not a pruning plan (no 'steps'): keys {sorted(data)[:5]}")
        return cls(
            steps=[{str(k): [int(i) for i in v] for k, v in s.items()} for s in data["steps"]],
            input_shapes=[list(map(int, s)) for s in data.get("input_shapes", [])],
            model_class=str(data.get("model_class", "")),
            input_dtypes=list(data.get("input_dtypes", [])),
            ignore=list(data.get("ignore", [])),
        )


def apply_plan(model: nn.Module, plan: PruningPlan, example_inputs: Any = None) -> nn.Module:
    """Replay ``plan`` on ``model`` (a fresh copy of the base architecture), in place.

    Args:
        model: the unpruned base model.
        plan: the plan to replay.
        example_inputs: inputs to trace with; defaults to zeros of ``plan.input_shapes``.

    Returns:
        ``model``, pruned; load the pruned ``state_dict`` into it afterwards.

    Raises:
        ConfigError: the model class differs from the plan's or a group key is unknown.
    """
    if plan.model_class and type(model).__name__ != plan.model_class:
        raise ConfigError(
            f"plan was made for {plan.model_class}, got {type(model).__name__}; "
            "build the same architecture with the same arguments."
        )
    inputs = example_inputs if example_inputs is not None else plan.example_inputs()
    for step in plan.steps:
        graph = build_graph(model, inputs, ignore=plan.ignore)
        prune_channels(model, graph, step)
    return model
