"""CUDA paths of latency and peak memory (run with ``-m gpu`` on a machine with a GPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medprune.measure import measure, measure_latency, peak_memory

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 2, 1))


def test_cuda_latency_and_memory():
    net = _net()
    x = torch.randn(1, 1, 32, 32, 32)
    r = measure_latency(net, x, device="cuda", warmup=2, repeats=5)
    assert r.device.startswith("cuda") and 0 < r.median_ms < 10_000
    assert next(net.parameters()).device.type == "cpu"  # the user's model was not moved
    one, four = peak_memory(net, x, device="cuda"), peak_memory(net, x, device="cuda", batch_size=4)
    assert four - one >= 3 * 8 * 32**3 * 4  # at least one more (8, 32, 32, 32) map per image
    m = measure(net, x, device="cuda", repeats=3, warmup=1)
    assert m.device.startswith("cuda") and m.peak_memory_bytes > 0
