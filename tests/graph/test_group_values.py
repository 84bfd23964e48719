"""Per-channel values of groups whose channels span several positions (whole grouped-conv blocks)."""

from __future__ import annotations

import torch

import medprune as mp


def test_norm_weights_of_grouped_conv_blocks_are_rms_per_group_channel() -> None:
    model = mp.create_model("tiny_grouped", in_channels=1).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, -1.0, 1.0)  # signs differ: RMS != mean
    graph = mp.build_graph(model, torch.randn(2, 1, 16, 16))
    spanning = [
        g
        for g in graph.prunable_groups()
        if any(s.index.shape[1] > 1 for s in g.members("per_channel", "weight"))
    ]
    assert spanning, "tiny_grouped should have a group whose channels are whole conv groups"
    group = spanning[0]
    for s, values in zip(group.members("per_channel", "weight"), group.norm_weights(), strict=True):
        gamma = group.tensor(s).detach()
        expected = torch.stack([gamma[row].pow(2).mean().sqrt() for row in s.index])
        if s.index.shape[1] == 1:
            expected = gamma[s.index[:, 0]]
        torch.testing.assert_close(values, expected)
    scores = mp.get_criterion("bn_scale")(graph)
    assert scores[group.key].shape == (group.n_channels,)
