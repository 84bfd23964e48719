"""A fake latency runtime with a known, synthetic cost table (no real timing)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medprune.latency.runtimes import Runtime
from medprune.latency.table import capture_calls


def step_cost(c_in: int, c_out: int, spatial: int, groups: int, quantum: int) -> float:
    """Latency step function: whole ``quantum``-channel tiles cost the same as partial ones."""
    tiles = math.ceil(c_in / quantum) * math.ceil(c_out / quantum) / max(groups, 1)
    return 1e-4 * tiles * quantum * quantum * spatial


class FakeRuntime(Runtime):
    """Deterministic latency: a step function of the channel counts; counts every layer timing.

    ``time_interleaved`` gives a whole model the sum over its conv / linear calls, so the
    tables describe the model exactly (no rest term) and predictions can be checked exactly.
    """

    name = "fake"

    def __init__(
        self, *, threads: int = 1, quantum: int = 1, version: str = "1", spread: float = 0.0
    ) -> None:
        super().__init__(torch.device("cpu"), threads=threads)
        self.quantum = quantum
        self.version = version
        self.spread = spread  # the run-to-run spread (%) every timing reports
        self.timings = 0

    def versions(self) -> dict[str, str]:
        return {"fake": self.version}

    @property
    def device_name(self) -> str:
        return "fake cpu"

    def time_module_spread(
        self, module: nn.Module, input_shape: tuple[int, ...], **_: object
    ) -> tuple[float, float]:
        self.timings += 1
        if isinstance(module, nn.Linear):
            cost = step_cost(module.in_features, module.out_features, 1, 1, self.quantum)
        else:
            spatial = math.prod(input_shape[2:])
            cost = step_cost(
                input_shape[1], module.out_channels, spatial, module.groups, self.quantum
            )
        return cost, self.spread

    def model_ms(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
        total = 0.0
        modules = dict(model.named_modules())
        for call in capture_calls(model, inputs):
            m = modules[call.module_name]
            spatial = 1 if isinstance(m, nn.Linear) else math.prod(call.input_shape[2:])
            total += step_cost(call.c_in, call.c_out, spatial, call.groups, self.quantum)
        return total

    def time_interleaved(
        self, models: Sequence[nn.Module], inputs: tuple[torch.Tensor, ...], repeats: int
    ) -> list[list[float]]:
        return [[self.model_ms(m, inputs)] * repeats for m in models]
