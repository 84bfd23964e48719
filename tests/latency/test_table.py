"""Lookup tables: interpolation, modes, and layer resizing."""

from __future__ import annotations

import pytest
import torch
from latency_fakes import FakeRuntime
from torch import nn

from medprune.errors import ConfigError
from medprune.latency import TableEntry, TableSettings, width_grid
from medprune.latency.table import capture_calls, measure_entry, resized_layer


def test_dense_lookup_is_exact_on_grid_and_bilinear_between() -> None:
    e = TableEntry("dense", [4, 8], [2, 4], [[1.0, 2.0], [3.0, 4.0]])
    assert e.lookup(8, 4) == e.full_ms == 4.0
    assert e.lookup(4, 2) == 1.0
    assert e.lookup(6, 3) == pytest.approx(2.5)
    assert e.lookup(1, 1) == 1.0  # clamped below the grid
    assert TableEntry.from_dict(e.to_dict()).lookup(6, 3) == pytest.approx(2.5)


def test_separable_is_row_times_column_over_full() -> None:
    e = TableEntry("separable", [4, 8], [2, 4], {"row": [2.0, 4.0], "col": [1.0, 4.0]})
    assert e.lookup(4, 2) == pytest.approx(2.0 * 1.0 / 4.0)
    assert e.lookup(8, 4) == 4.0


def test_grouped_conv_is_diagonal_with_scaled_groups() -> None:
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16)
    (call,) = capture_calls(conv, (torch.randn(1, 16, 8, 8),))
    layer, shape = resized_layer(conv, call, 16, 8)
    assert (layer.in_channels, layer.out_channels, layer.groups, shape[1]) == (8, 8, 8, 8)
    rt = FakeRuntime()
    entry = measure_entry(conv, call, [16], width_grid(16), rt, TableSettings(), None)
    assert entry.mode == "diagonal" and rt.timings == len(width_grid(16))


def test_3d_layers_are_measured_separably() -> None:
    conv = nn.Conv3d(8, 8, 3, padding=1)
    (call,) = capture_calls(conv, (torch.randn(1, 8, 4, 4, 4),))
    rt = FakeRuntime()
    entry = measure_entry(conv, call, width_grid(8), width_grid(8), rt, TableSettings(), None)
    assert entry.mode == "separable" and rt.timings == 2 * len(width_grid(8)) - 1


def test_width_grid_rejects_tiny_max_points() -> None:
    with pytest.raises(ConfigError, match="max_points must be >= 2; got 1"):
        width_grid(16, max_points=1)
