"""params, size, latency, peak memory and the one-call ``measure``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import medprune
from medprune.errors import ConfigError, ShapeMismatchError
from medprune.measure import (
    LatencyResult,
    Measurement,
    count_params,
    measure,
    measure_latency,
    peak_memory,
    serialized_size,
)


def _net(width: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 2),
    )


def test_count_params_and_trainable_only():
    net = _net(4)
    want = (1 * 4 * 9 + 4) + (4 + 4) + (4 * 2 + 2)
    assert count_params(net) == want
    net[0].weight.requires_grad_(False)
    assert count_params(net, trainable_only=True) == want - 36
    shared = nn.Sequential(net[5], net[5])
    assert count_params(shared) == 10  # a shared layer counts once


def test_serialized_size_grows_with_params():
    small, big = nn.Linear(64, 32), nn.Linear(128, 96)
    size_small, size_big = serialized_size(small), serialized_size(big)
    assert size_small >= 4 * count_params(small)
    # float32 parameters: 4 bytes each, plus a small, roughly constant pickle overhead
    added = 4 * (count_params(big) - count_params(small))
    assert added <= size_big - size_small < added + 1024


def test_latency_is_sane_and_restores_threads():
    net = _net().train()
    before = torch.get_num_threads()
    wanted = before + 1
    r = measure_latency(
        net, torch.randn(1, 1, 16, 16), threads=wanted, warmup=1, repeats=7, batch_size=3
    )
    assert isinstance(r, LatencyResult)
    assert len(r.times_ms) == r.repeats == 7
    assert 0 < r.min_ms <= r.p10_ms <= r.median_ms <= r.p90_ms < 10_000
    assert r.mean_ms > 0
    assert (r.threads, r.batch_size, r.device, r.backend) == (wanted, 3, "cpu", "torch")
    assert torch.get_num_threads() == before
    assert net.training  # eval mode only during the measurement
    more = measure_latency(net, torch.randn(1, 1, 16, 16), warmup=0, repeats=12)
    assert len(more.times_ms) == 12
    assert json.loads(json.dumps(r.to_dict()))["times_ms"] == list(r.times_ms)


def test_latency_rejects_bad_counts():
    with pytest.raises(ConfigError, match="repeats must be an int >= 1; got 0"):
        measure_latency(_net(), torch.randn(1, 1, 8, 8), repeats=0)
    with pytest.raises(ConfigError, match="threads must be an int >= 1 or None; got -2"):
        measure_latency(_net(), torch.randn(1, 1, 8, 8), threads=-2)


def test_peak_memory_exact_for_conv_relu():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 10, 10)
    state = (conv.weight.numel() + conv.bias.numel() + x.numel()) * 4
    act = 2 * 3 * 10 * 10 * 4  # one (2, 3, 10, 10) float32 map
    # the conv output is alive while ReLU writes a second map of the same size
    assert peak_memory(nn.Sequential(conv, nn.ReLU()), x) == state + 2 * act
    # in place, ReLU reuses the conv output's storage: counted once
    assert peak_memory(nn.Sequential(conv, nn.ReLU(inplace=True)), x) == state + act


def test_peak_memory_grows_with_batch():
    net = _net(8)
    x = torch.randn(1, 1, 32, 32)
    one, four = peak_memory(net, x), peak_memory(net, x, batch_size=4)
    per_image = four - one
    assert per_image > 3 * 8 * 32 * 32 * 4  # at least three more (8, 32, 32) maps alive
    assert one > 4 * count_params(net)


def test_measure_fields_and_json():
    net = _net().train()
    m = measure(net, torch.randn(2, 1, 16, 16), repeats=3, warmup=1, threads=1)
    assert isinstance(m, Measurement)
    assert m.params == count_params(net)
    assert m.macs == 2 * 16 * 16 * 4 * 9 + 2 * 4 * 2
    assert m.latency_ms == m.latency["median_ms"] > 0
    assert m.peak_memory_bytes > m.size_bytes / 2
    assert (m.device, m.threads, m.batch_size, m.input_shape) == ("cpu", 1, 2, ((2, 1, 16, 16),))
    assert m.onnx_latency_ms is None
    assert net.training
    d = json.loads(json.dumps(m.to_dict()))
    assert d["input_shape"] == [[2, 1, 16, 16]] and d["macs"] == m.macs
    quick = measure(net, torch.randn(2, 1, 16, 16), latency=False, memory=False, batch_size=5)
    assert quick.latency_ms is None and quick.peak_memory_bytes is None
    assert quick.batch_size == 5 and quick.macs == m.macs // 2 * 5


def test_top_level_measure_is_the_function():
    m = medprune.measure(_net(), torch.randn(1, 1, 8, 8), latency=False, memory=False)
    assert m.params == count_params(_net())


def test_wrong_rank_is_a_shape_error():
    with pytest.raises(ShapeMismatchError, match=r"shape \(1, 1, 8, 8, 8\).*Conv2d") as info:
        measure(_net(), torch.randn(1, 1, 8, 8, 8))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_bad_example_inputs_type():
    with pytest.raises(ConfigError, match="example_inputs must be a tensor.*got ndarray"):
        measure(_net(), np.zeros((1, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"example_inputs\[1\] must be a torch.Tensor; got str"):
        measure(_net(), (torch.randn(1, 1, 8, 8), "x"))
