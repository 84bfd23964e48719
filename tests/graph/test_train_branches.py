"""Branches that only matter in training, models that tracing could disturb, guessed channel dims."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from rule_models import X2
from torch import nn

from medprune.graph import build_graph, prune_channels
from medprune.graph.verify import check_equivalence


class TrainOnlyBranch(nn.Module):
    """A VAE-style branch: ``aux`` reads the features only in training (SegResNetVAE)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)
        self.aux = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        y = F.relu(self.conv(x))
        out = self.head(y)
        if self.training:
            return out, self.aux(y).mean()
        return out


class SideEffectHeads(nn.Module):
    """DynUNet-style deep supervision: a head computed in every mode but kept in a list shared
    with the parent, and returned (stacked with the output) only in training."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)
        self.side = nn.Conv2d(8, 2, 1)
        self.heads = [torch.zeros(1)]
        self.inner = nn.Module()
        self.inner.heads = self.heads  # the same list object, as DynUNet's skip layers hold it

    def forward(self, x):
        y = F.relu(self.conv(x))
        self.inner.heads[0] = self.side(y)
        out = self.head(y)
        if self.training:
            return torch.stack([out, self.heads[0]], dim=1)
        return out


def test_train_only_branch_follows_the_pruned_channels():
    model = TrainOnlyBranch()
    graph = build_graph(model, X2)
    g = graph.group("conv.out")
    assert g.prunable and "aux" in {s.module_name for s in g.slices}
    prune_channels(model, graph, {"conv.out": torch.tensor([0, 3, 5])})
    assert model.aux.in_channels == 5
    model.train()
    out, aux = model(X2)  # would raise if aux still expected 8 channels
    assert out.shape == (2, 2, 8, 8) and aux.ndim == 0


def test_side_effect_heads_are_traced_in_train_mode_and_not_pruned():
    model = SideEffectHeads()
    graph = build_graph(model, X2)
    side = [g for g in graph.groups if any(s.module_name == "side" for s in g.members("out"))]
    assert side and not any(g.prunable for g in side)  # stacked with the output in training
    result = check_equivalence(SideEffectHeads(), X2)
    assert result.train_forward_ok and result.max_abs_diff <= 1e-9 * max(result.max_abs_ref, 1)


def test_build_graph_keeps_shared_attributes_of_the_model():
    model = SideEffectHeads()
    heads = model.heads
    build_graph(model, X2)
    assert model.heads is heads and model.inner.heads is heads
    assert all(type(t) is torch.Tensor for t in heads)  # no fake tensor left behind
    model.train()
    assert model(X2).shape == (2, 2, 2, 8, 8)


class ClsTokenMlp(nn.Module):
    """A ViT stream: patch tokens, a class token concatenated (an op medprune pins), an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, 8)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)
        t = t + self.fc2(F.gelu(self.fc1(t)))
        return self.out(t[:, 0])


def test_mlp_behind_an_unknown_op_keeps_its_hidden_units_prunable(compare):
    graph = build_graph(ClsTokenMlp(), X2)
    assert graph.group("fc1.out").prunable and graph.group("fc1.out").n_channels == 16
    pruned, _, plan, _ = compare(ClsTokenMlp(), X2)
    assert pruned.fc1.out_features == 16 - plan["fc1.out"].numel()


class Float32Inside(nn.Module):
    """Builds a float32 kernel in its forward, so it cannot run in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        blur = torch.full((2, 1, 3, 3), 1 / 9)  # default dtype
        return F.conv2d(self.head(F.relu(self.conv(x))), blur, padding=1, groups=2)


def test_equivalence_check_falls_back_to_float32():
    result = check_equivalence(Float32Inside(), X2)
    assert result.groups >= 1 and result.train_forward_ok
    assert result.max_abs_diff <= 1e-5 * max(result.max_abs_ref, 1)
