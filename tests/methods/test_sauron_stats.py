"""Sauron's distances and threshold schedule, checked on hand-worked tensors."""

from __future__ import annotations

import math

import pytest
import torch

from medprune.errors import ConfigError
from medprune.methods._sauron_stats import (
    LayerSchedule,
    channels_below,
    clustering_distance,
    converged,
    prune_distances,
    tau_grid,
    update_threshold,
    validate_options,
)


def test_clustering_distance_by_hand() -> None:
    # one sample, two 2x2 maps; pooling factor 1 keeps the 4 positions
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # min-max -> [0, 1/3, 2/3, 1]
    b = torch.tensor([[3.0, 2.0], [1.0, 0.0]])  # min-max -> [1, 2/3, 1/3, 0]
    x = torch.stack([a, b])[None]  # (1, 2, 2, 2)
    diff = torch.tensor([1.0, 1 / 3, 1 / 3, 1.0])
    expected = math.sqrt(float((diff**2).mean()))
    got = clustering_distance(x.double(), pool_factor=1, eps=0.0)
    assert float(got) == pytest.approx(expected)
    # scale and shift invariance of the min-max normalisation
    assert float(clustering_distance(x * 5 + 2, pool_factor=1, eps=0.0)) == pytest.approx(expected)


def test_clustering_distance_pools_and_has_finite_gradients() -> None:
    x = torch.randn(2, 3, 4, 4, 4, requires_grad=True)  # 3-D maps
    same = x.detach().clone()
    same[:, 1] = same[:, 0]  # coinciding maps: sqrt(0) must not give NaN gradients
    same.requires_grad_(True)
    for t in (x, same):
        clustering_distance(t).backward()
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert float(clustering_distance(torch.randn(2, 1, 4, 4))) == 0.0  # one channel


def test_prune_distances_by_hand() -> None:
    maps = torch.zeros(1, 3, 2, 2)
    maps[0, 1] = 1.0  # distance 1 from channel 0
    maps[0, 2] = 3.0  # distance 3 from channel 0
    d = prune_distances(maps, reference=0, pool_factor=1)
    torch.testing.assert_close(d, torch.tensor([0.0, 1 / 3, 1.0]), atol=1e-6, rtol=0)
    d2 = prune_distances(maps, reference=1, pool_factor=2)  # pooled to one value per map
    torch.testing.assert_close(d2, torch.tensor([0.5, 0.0, 1.0]), atol=1e-6, rtol=0)


def test_tau_grid_matches_the_reference() -> None:
    grid = tau_grid(0.001, 0.3, 15)
    assert len(grid) == 16 and grid[0] == pytest.approx(0.001) and grid[-1] == pytest.approx(0.3)
    assert grid[1] - grid[0] == pytest.approx((0.3 - 0.001) / 15)


def _plateau(n: int = 8) -> tuple[list[float], list[float]]:
    train = [1.0, 0.9, 0.8, 0.85, 0.82, 0.84, 0.83, 0.835][:n]
    val = [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89][:n]
    return train, val


def test_converged_requires_every_clause() -> None:
    train, val = _plateau()
    layer = LayerSchedule(tau=0.001, channels=[16, 16])
    assert converged(layer, train, val, rho=5, mu=0.02, faithful=False)
    assert not converged(layer, train[:5], val[:5], rho=5, mu=0.02, faithful=False)  # too short
    assert not converged(layer, train[:-1] + [0.5], val, rho=5, mu=0.02, faithful=False)  # new low
    removed_many = LayerSchedule(tau=0.001, channels=[16, 14])  # 2 >= ceil(0.02 * 16) = 1
    assert not converged(removed_many, train, val, rho=5, mu=0.02, faithful=False)
    new_best = val[:-1] + [0.1]
    assert not converged(layer, train, new_best, rho=5, mu=0.02, faithful=False)
    # the reference's check compares with a history containing the latest value: never blocks
    assert converged(layer, train, new_best, rho=5, mu=0.02, faithful=True)


def test_update_threshold_raises_then_waits() -> None:
    train, val = _plateau()
    grid = tau_grid(0.001, 0.3, 15)
    layer = LayerSchedule(tau=0.001, channels=[16, 16])
    assert update_threshold(layer, grid, train, val, rho=2, mu=0.02, faithful=False)
    assert layer.tau == pytest.approx(grid[1]) and layer.patience == 2
    assert not update_threshold(layer, grid, train, val, rho=2, mu=0.02, faithful=False)
    assert layer.patience == 1 and layer.tau == pytest.approx(grid[1])
    top = LayerSchedule(tau=grid[-1], channels=[16, 16])
    assert not update_threshold(top, grid, train, val, rho=2, mu=0.02, faithful=False)


def test_channels_below_protects_reference_and_minimum() -> None:
    d = torch.tensor([0.0, 0.05, 0.5, 0.01, 0.9, 0.02])
    assert channels_below(d, 0.1, reference=0).tolist() == [1, 3, 5]
    assert channels_below(d, 0.1, reference=3).tolist() == [0, 1, 5]
    assert channels_below(d, 1.0, reference=0, keep_min=4).tolist() == [3, 5]  # lowest go first
    blocks = channels_below(d, 0.1, reference=2, multiple=2)  # blocks (0,1) (2,3) (4,5)
    assert blocks.tolist() == [0, 1]


def test_validate_options_messages() -> None:
    with pytest.raises(ConfigError, match="tau_init <= tau_max"):
        validate_options(0.5, 2, 0.4, 0.3, 15, 5, 0.02, 1, ())
    with pytest.raises(ConfigError, match="pool_factor"):
        validate_options(0.5, 0, 0.001, 0.3, 15, 5, 0.02, 1, ())
