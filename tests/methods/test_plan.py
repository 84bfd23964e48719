"""plan_pruning on a synthetic graph whose cost model is known exactly."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from medprune.errors import ConfigError
from medprune.graph.group import ChannelSlice, PruningGroup
from medprune.methods import Target, plan_pruning


@dataclass
class Cost:
    macs: float
    params: float


class FakeGraph:
    """Groups with a linear cost: each channel of group ``g`` costs ``unit[g]`` MACs / params."""

    def __init__(self, spec: dict[str, tuple[int, float]], multiple: dict[str, int] | None = None):
        self.groups = []
        for key, (n, _) in spec.items():
            s = ChannelSlice(key, "weight", 0, torch.arange(n)[:, None], "out")
            m = (multiple or {}).get(key, 1)
            self.groups.append(PruningGroup(key, n, (s,), channel_multiple=m))
        self.unit = {k: u for k, (_, u) in spec.items()}
        self.calls = 0

    def prunable_groups(self):
        return self.groups

    def estimate(self, removed):
        self.calls += 1
        total = 1000.0  # unprunable part
        for g in self.groups:
            r = removed.get(g.key, torch.zeros(0))
            r = r if isinstance(r, int) else len(r)
            total += self.unit[g.key] * (g.n_channels - r)
        return Cost(total, total / 2 + 7)


def _scores(graph, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {g.key: torch.rand(g.n_channels, generator=gen) for g in graph.groups}


def _fraction(graph, plan, kind="macs"):
    base = getattr(graph.estimate({}), kind)
    return 1 - getattr(graph.estimate(plan), kind) / base


def test_uniform_ratio_removes_lowest_scores():
    g = FakeGraph({"a": (8, 1.0), "b": (10, 1.0)})
    scores = {"a": torch.arange(8.0), "b": torch.arange(10.0).flip(0)}
    plan = plan_pruning(g, scores, Target(ratio=0.5), scope="uniform")
    assert plan["a"].tolist() == [0, 1, 2, 3]
    assert plan["b"].tolist() == [5, 6, 7, 8, 9]


def test_per_layer_table_and_ignore():
    g = FakeGraph({"layer1.conv": (8, 1.0), "layer2.conv": (8, 1.0), "head": (4, 1.0)})
    plan = plan_pruning(
        g,
        _scores(g),
        None,
        scope="per_layer",
        per_layer={"layer1": 0.25, "layer2.*": 0.5},
        ignore=["head"],
    )
    assert len(plan["layer1.conv"]) == 2 and len(plan["layer2.conv"]) == 4
    assert "head" not in plan


def test_global_ranking_uses_normalised_scores_and_cap():
    g = FakeGraph({"a": (10, 1.0), "b": (10, 1.0)})
    # b's scores are 100x larger but identically shaped: normalised, both lose the same number
    base = torch.linspace(0.1, 1.0, 10)
    plan = plan_pruning(g, {"a": base, "b": 100 * base}, Target(ratio=0.4))
    assert len(plan["a"]) == len(plan["b"]) == 4
    # the 15 lowest normalised scores are b's five 0.1 and all of a: a is capped at 90%
    a = 1.0 + base * 1e-3
    b = torch.tensor([0.1] * 5 + [1.9] * 5)
    plan = plan_pruning(g, {"a": a, "b": b}, Target(ratio=0.75))
    assert len(plan["a"]) == 9 and len(plan["b"]) == 5


@pytest.mark.parametrize("kind", ["macs", "params"])
@pytest.mark.parametrize("goal", [0.2, 0.45, 0.6])
def test_budget_search_within_one_point(kind, goal):
    g = FakeGraph({f"g{i}": (32 + 8 * i, 10.0 * (i + 1)) for i in range(6)})
    plan = plan_pruning(g, _scores(g), Target(**{kind: goal}))
    assert abs(_fraction(g, plan, kind) - goal) <= 0.01
    assert g.calls < 40  # bisection, not a linear scan


def test_uniform_scope_with_macs_target():
    g = FakeGraph({f"g{i}": (64, 5.0 * (i + 1)) for i in range(4)})
    plan = plan_pruning(g, _scores(g), Target(macs=0.4), scope="uniform")
    sizes = {len(v) for v in plan.values()}
    assert len(sizes) == 1  # same count everywhere
    assert abs(_fraction(g, plan) - 0.4) <= 0.01


def test_channel_multiple_min_channels_and_round_to():
    g = FakeGraph({"gn": (16, 1.0), "conv": (30, 1.0)}, multiple={"gn": 4})
    scores = _scores(g)
    plan = plan_pruning(g, scores, Target(ratio=0.5), scope="uniform", round_to=8)
    # GroupNorm-like group: whole blocks of 4 go
    blocks = plan["gn"].reshape(-1, 4)
    assert (blocks - blocks[:, :1] == torch.arange(4)).all() and (blocks[:, 0] % 4 == 0).all()
    assert (16 - len(plan["gn"])) % 8 == 0 and (30 - len(plan["conv"])) % 8 == 0
    plan = plan_pruning(g, scores, Target(ratio=0.5), scope="uniform", min_channels=20)
    assert "gn" not in plan and 30 - len(plan["conv"]) >= 20


def test_unreachable_target_names_largest_fraction():
    g = FakeGraph({"a": (10, 1.0)})  # 10 of 1010 MACs are prunable at all
    with pytest.raises(ConfigError, match=r"largest fraction of macs .* is 0\.009"):
        plan_pruning(g, _scores(g), Target(macs=0.5))


def test_bad_arguments():
    g = FakeGraph({"a": (10, 1.0)})
    s = _scores(g)
    with pytest.raises(ConfigError, match="scope must be"):
        plan_pruning(g, s, Target(ratio=0.5), scope="local")
    with pytest.raises(ConfigError, match="max_per_layer"):
        plan_pruning(g, s, Target(ratio=0.5), max_per_layer=1.0)
    with pytest.raises(ConfigError, match="no scores for group 'a'"):
        plan_pruning(g, {}, Target(ratio=0.5))
    with pytest.raises(ConfigError, match="per_layer"):
        plan_pruning(g, s, Target(macs=0.5), scope="per_layer", per_layer={"a": 0.5})
    with pytest.raises(ConfigError, match="exactly one"):
        Target(macs=0.5, params=0.5)
