"""Data-driven criteria (hrank, beta_rank, taylor, taylor_gn) on hand-made models and data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from criteria_toys import ToyGraph, batches, conv_group, convnet_graph
from torch import nn

from medprune.criteria import get_criterion
from medprune.errors import ConfigError


def _conv_model(weight: torch.Tensor, padding: int = 0, bias: bool = False) -> ToyGraph:
    n, c_in, k = weight.shape[0], weight.shape[1], weight.shape[2]
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(c_in, n, k, padding=padding, bias=bias))
    with torch.no_grad():
        model.conv.weight.copy_(weight)
    return ToyGraph(model.eval(), [conv_group("conv", ["conv"], n)])


# ---------------------------------------------------------------- hrank
def test_hrank_hand_computed():
    g = _conv_model(torch.tensor([1.0, 0.0, -1.0]).reshape(3, 1, 1, 1))
    rank1 = torch.outer(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 1, 2, 1]))  # rank 1
    eye = torch.eye(4)  # rank 4
    data = [(torch.stack([rank1, eye])[:, None], torch.tensor([0, 1]))]
    relu = get_criterion("hrank", tie_break="none")(g, data)["conv"]
    assert relu.tolist() == [2.5, 0.0, 0.0]  # -x is <= 0 everywhere: relu kills it
    raw = get_criterion("hrank", tie_break="none", activation="none")(g, data)["conv"]
    assert raw.tolist() == [2.5, 0.0, 2.5]
    gram = get_criterion("hrank", tie_break="none", activation="none", method="gram")(g, data)
    assert gram["conv"].tolist() == [2.5, 0.0, 2.5]


def test_hrank_tie_break_orders_ties_by_l1_only():
    w = torch.tensor([1.0, 3.0, 2.0, 0.0]).reshape(4, 1, 1, 1)
    g = _conv_model(w)
    data = [(torch.rand(2, 1, 5, 5) + 0.1, torch.tensor([0, 1]))]
    raw = get_criterion("hrank", tie_break="none")(g, data)["conv"]
    tied = get_criterion("hrank")(g, data)["conv"]
    assert raw[0] == raw[1] == raw[2] > raw[3]
    assert tied[1] > tied[2] > tied[0] > tied[3]  # L1 order among the tie, rank order kept
    assert (tied - raw).abs().max() <= 1.001e-3 * raw.max()


def test_hrank_3d_is_mean_slice_rank():
    conv = nn.Conv3d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    model = nn.Sequential()
    model.add_module("conv", conv)
    g = ToyGraph(model.eval(), [conv_group("conv", ["conv"], 1)])
    vol = torch.zeros(1, 1, 2, 4, 4)
    vol[0, 0, 0] = torch.eye(4)  # slice 0 rank 4, slice 1 rank 0
    got = get_criterion("hrank", tie_break="none")(g, [(vol, torch.tensor([0]))])["conv"]
    assert got.tolist() == [2.0]


# ---------------------------------------------------------------- beta_rank
def test_beta_rank_1x1_conv_hand_computed():
    # y_k = w_k x  =>  sigma_out = |w_k| sigma_in at every position  =>  score = |w_k| * |w_k|
    g = _conv_model(torch.tensor([2.0, -1.0, 0.5]).reshape(3, 1, 1, 1))
    x = torch.randn(6, 1, 4, 4)
    x[:, :, 0, 0] = 5.0  # a constant position: zero input spread, must be skipped (no inf/NaN)
    data = [(x[:3], torch.zeros(3)), (x[3:], torch.zeros(3))]
    got = get_criterion("beta_rank")(g, data)["conv"]
    torch.testing.assert_close(got, torch.tensor([4.0, 1.0, 0.25]), rtol=1e-4, atol=1e-5)
    inv = get_criterion("beta_rank", ratio="in_over_out")(g, data)["conv"]
    torch.testing.assert_close(inv, torch.ones(3), rtol=1e-4, atol=1e-5)
    mm = get_criterion("beta_rank", normalize="minmax")(g, data)["conv"]
    torch.testing.assert_close(mm, torch.tensor([1.0, 0.75 / 3.75, 0.0]), rtol=1e-4, atol=1e-5)


def _beta_numpy(w: np.ndarray, x: np.ndarray, pad: int) -> np.ndarray:
    """Independent loop implementation: per position, receptive-field element variances."""
    n_img, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    valid = np.pad(np.ones((h, wd)), pad)
    h_out, w_out = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    y = np.zeros((n_img, c_out, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            y[:, :, i, j] = np.einsum("nckl,ockl->no", xp[:, :, i : i + k, j : j + k], w)
    sigma_out = y.std(0)  # (c_out, h_out, w_out), population std over images
    scores = np.zeros(c_out)
    for o in range(c_out):
        ratios = []
        for i in range(h_out):
            for j in range(w_out):
                mask = valid[i : i + k, j : j + k].astype(bool)
                patch = xp[:, :, i : i + k, j : j + k][:, :, mask]  # (n, c_in, m)
                sigma_in = np.sqrt(patch.var(0).mean())
                if sigma_in > 1e-6:
                    ratios.append(sigma_out[o, i, j] / sigma_in)
        scores[o] = np.abs(w[o]).sum() * np.mean(ratios)
    return scores


def test_beta_rank_matches_numpy_loops_and_streams():
    torch.manual_seed(1)
    w = torch.randn(3, 2, 3, 3)
    g = _conv_model(w, padding=1, bias=True)
    x = torch.randn(10, 2, 5, 5)
    expected = _beta_numpy(w.double().numpy(), x.double().numpy(), pad=1)
    one_batch = get_criterion("beta_rank")(g, [(x, torch.zeros(10))])["conv"]
    streamed = get_criterion("beta_rank")(
        g, [(x[i : i + 3], torch.zeros(3)) for i in range(0, 10, 3)]
    )
    np.testing.assert_allclose(one_batch.numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(streamed["conv"].numpy(), expected, rtol=1e-4)


# ---------------------------------------------------------------- taylor / taylor_gn
class PoolNet(nn.Module):
    """conv 1x1 (2->3) -> global mean -> linear (3->2): gradients have a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def _taylor_numpy(model: PoolNet, data) -> np.ndarray:
    w1 = model.conv.weight.detach().double().numpy()[:, :, 0, 0]
    b1 = model.conv.bias.detach().double().numpy()
    w2 = model.fc.weight.detach().double().numpy()
    b2 = model.fc.bias.detach().double().numpy()
    total = np.zeros(3)
    for x, y in data:
        x = x.double().numpy()
        a = np.einsum("kc,nchw->nkhw", w1, x) + b1[None, :, None, None]
        m = a.mean((2, 3))  # (B, 3)
        logits = m @ w2.T + b2
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d_logits = (p - np.eye(2)[y.numpy()]) / x.shape[0]  # d mean-CE / d logits
        gate = (m * (d_logits @ w2)).sum(0)  # sum_{n,s} a * dL/da
        total += gate**2
    return total / len(data)


def test_taylor_matches_numpy():
    model = PoolNet().eval()
    g = ToyGraph(model, [conv_group("conv", ["conv"], 3, bias=True)])
    data = batches(n_batches=3, b=5, c_in=2, size=4)
    got = get_criterion("taylor")(g, data)["conv"].double().numpy()
    np.testing.assert_allclose(got, _taylor_numpy(model, data), rtol=1e-4)
    assert model.conv.weight.grad is None and model.conv.weight.requires_grad


class ScaledLoss:
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.factor * F.cross_entropy(outputs, targets)


def test_taylor_gn_is_invariant_to_loss_scale_taylor_is_not():
    g = convnet_graph()
    data = batches()
    gn1 = get_criterion("taylor_gn")(g, data, task=ScaledLoss(1.0))
    gn10 = get_criterion("taylor_gn")(g, data, task=ScaledLoss(10.0))
    t1 = get_criterion("taylor")(g, data, task=ScaledLoss(1.0))
    t10 = get_criterion("taylor")(g, data, task=ScaledLoss(10.0))
    for k in gn1:
        torch.testing.assert_close(gn1[k], gn10[k], rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(t10[k], 100 * t1[k], rtol=1e-4, atol=1e-9)


def test_taylor_gn_label_free_is_seeded():
    g = convnet_graph()
    unlabeled = [x for x, _ in batches()]
    a = get_criterion("taylor_gn", seed=1)(g, unlabeled)
    b = get_criterion("taylor_gn", seed=1)(g, unlabeled)
    c = get_criterion("taylor_gn", seed=2)(g, unlabeled)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1"], c["conv1"])
    with pytest.raises(ConfigError, match="needs labels"):
        get_criterion("taylor")(g, unlabeled)


def test_taylor_gn_per_example_hand_computed():
    # one example, output = fc(mean(conv(x))): with a random unit output gradient u, the gate
    # contribution of channel k is m_k * (u @ W2)_k; the score is its square
    model = PoolNet().eval()
    g = ToyGraph(model, [conv_group("conv", ["conv"], 3, bias=True)])
    x = torch.randn(1, 2, 3, 3)
    got = get_criterion("taylor_gn", output_grad="random", seed=5)(g, [x])["conv"]
    u = torch.randn((1, 2), generator=torch.Generator().manual_seed(5))
    u = u / u.norm()
    with torch.no_grad():
        m = model.conv(x).mean((2, 3))
        expected = (m * (u @ model.fc.weight)).square()[0]
    torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-8)


def test_data_criteria_need_calibration():
    with pytest.raises(ConfigError, match="needs calibration"):
        get_criterion("hrank")(convnet_graph())
