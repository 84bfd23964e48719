"""Class-aware statistics: a channel that fires only for the rare class ranks higher."""

from __future__ import annotations

import pytest
import torch
from criteria_toys import ToyGraph, conv_group
from torch import nn

from medprune.criteria import get_criterion
from medprune.criteria.streaming import image_buckets
from medprune.errors import ConfigError


class TwoPath(nn.Module):
    """conv_a (1->2, weights +1 / -1) -> relu -> conv_b (identity 2->2) -> pool -> fc.

    Channel 0 of conv_b carries relu(x) (fires on positive images, the common class), channel 1
    carries relu(-x) (fires on negative images, the rare class).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(1, 2, 1, bias=False)
        self.conv_b = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv_a.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
            self.conv_b.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_b(torch.relu(self.conv_a(x)))
        return self.fc(h.mean((2, 3)))


def _imbalanced(n_common: int = 18, n_rare: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    common = torch.rand(n_common, 1, 5, 5, generator=gen) + 0.1  # positive images, label 0
    rare = -(torch.rand(n_rare, 1, 5, 5, generator=gen) + 0.1)  # negative images, label 1
    x = torch.cat([common, rare])
    y = torch.cat([torch.zeros(n_common), torch.ones(n_rare)]).long()
    perm = torch.randperm(len(y), generator=gen)
    x, y = x[perm], y[perm]
    return [(x[i : i + 5], y[i : i + 5]) for i in range(0, len(y), 5)]


def _graph() -> ToyGraph:
    model = TwoPath().eval()
    return ToyGraph(model, [conv_group("conv_b", ["conv_b"], 2, consumers=["fc"])])


@pytest.mark.parametrize("name", ["hrank", "beta_rank", "taylor", "taylor_gn"])
def test_rare_class_channel_ranks_higher_class_aware(name):
    data = _imbalanced()
    g = _graph()
    pooled = get_criterion(name)(g, data)["conv_b"]
    aware = get_criterion(name, class_aware=True)(g, data)["conv_b"]
    # relative importance of the rare-class channel (1) vs the common one (0) goes up
    assert aware[1] / aware[0] > pooled[1] / pooled[0]


def test_hrank_class_aware_hand_computed():
    data = _imbalanced()
    g = _graph()
    pooled = get_criterion("hrank", tie_break="none")(g, data)["conv_b"]
    aware = get_criterion("hrank", tie_break="none", class_aware=True)(g, data)["conv_b"]
    # random positive 5x5 maps have rank 5: pooled = 5 * frequency, class-aware = 5 / 2
    torch.testing.assert_close(pooled, torch.tensor([5 * 18 / 20, 5 * 2 / 20]))
    torch.testing.assert_close(aware, torch.tensor([2.5, 2.5]))
    weighted = get_criterion("hrank", tie_break="none", class_aware=True, class_weights=[1, 3])
    torch.testing.assert_close(weighted(g, data)["conv_b"], torch.tensor([1.25, 3.75]))


def test_segmentation_bucket_is_dominant_foreground():
    masks = torch.zeros(3, 4, 4, dtype=torch.long)
    masks[0, :2] = 1  # 8 pixels of class 1
    masks[0, 2, :1] = 2  # 1 pixel of class 2
    masks[1, 0, 0] = 2  # only class 2
    # image 2: background only
    assert image_buckets(masks, torch.zeros(3, 1, 4, 4)).tolist() == [1, 2, 0]
    assert image_buckets(torch.tensor([3, 0, 1]), torch.zeros(3, 1, 4, 4)).tolist() == [3, 0, 1]


def test_class_aware_needs_labels_and_valid_weights():
    g = _graph()
    unlabeled = [x for x, _ in _imbalanced()]
    with pytest.raises(ConfigError, match="needs labels"):
        get_criterion("hrank", class_aware=True)(g, unlabeled)
    with pytest.raises(ConfigError, match="class_weights only apply"):
        get_criterion("hrank", class_weights=[1, 2])
    with pytest.raises(ConfigError, match="contains class 1"):
        get_criterion("hrank", class_aware=True, class_weights=[1.0])(g, _imbalanced())
