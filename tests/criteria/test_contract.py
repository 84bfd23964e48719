"""The Criterion contract, for every registered criterion (new ones are tested automatically)."""

from __future__ import annotations

import pytest
import torch
from criteria_toys import batches, convnet_graph, resnet_graph

from medprune.criteria import get_criterion, list_criteria


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list_criteria())
@pytest.mark.parametrize("make", [convnet_graph, resnet_graph], ids=["convnet", "resnet"])
def test_contract(name, make):
    g = make()
    g.model.train()  # criteria must not leave eval mode behind, nor update BN statistics
    c_in = 2 if make is convnet_graph else 1
    data = batches(c_in=c_in)
    before = _state(g.model)
    scores = get_criterion(name)(g, data)
    assert set(scores) == {grp.key for grp in g.prunable_groups()}
    for grp in g.prunable_groups():
        s = scores[grp.key]
        assert s.shape == (grp.n_channels,)
        assert s.dtype == torch.float32 and not s.requires_grad
        assert torch.isfinite(s).all()
    assert g.model.training and all(m.training for m in g.model.modules())
    after = _state(g.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and p.requires_grad for p in g.model.parameters())


@pytest.mark.parametrize("name", list_criteria())
def test_contract_3d(name):
    from criteria_toys import ConvNet

    g = convnet_graph(ConvNet(c_in=1, dims=3))
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(2, 1, 4, 4, 4, generator=gen), torch.tensor([0, 1])) for _ in range(2)]
    scores = get_criterion(name)(g, data)
    assert all(
        torch.isfinite(s).all() and s.shape == (grp.n_channels,)
        for grp, s in zip(g.prunable_groups(), scores.values(), strict=True)
    )
