"""ONNX export checked with ONNX Runtime, TorchScript round trip, ONNX Runtime latency."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from medprune.errors import TraceError
from medprune.measure import export_onnx, export_torchscript, measure, onnx_latency


class _TinyUNet(nn.Module):
    """conv-bn-relu, stride-2 down, transposed-conv up, concat skip; 2D or 3D."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        conv, bn, up = (
            (nn.Conv2d, nn.BatchNorm2d, nn.ConvTranspose2d)
            if dims == 2
            else (nn.Conv3d, nn.BatchNorm3d, nn.ConvTranspose3d)
        )
        self.enc = nn.Sequential(conv(1, 4, 3, padding=1), bn(4), nn.ReLU())
        self.down = conv(4, 8, 3, stride=2, padding=1)
        self.up = up(8, 4, 2, stride=2)
        self.out = conv(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        return self.out(torch.cat([e, self.up(torch.relu(self.down(e)))], 1))


def _randomise_bn(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


def test_onnx_matches_pytorch_with_dynamic_batch(tmp_path):
    net = _randomise_bn(_TinyUNet(2)).train()
    path = export_onnx(net, torch.randn(1, 1, 16, 16), tmp_path / "sub" / "net.onnx")
    assert path.is_file() and net.training
    assert [p.name for p in path.parent.iterdir()] == ["net.onnx"]  # no temp file left
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 1, 16, 16)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            want = net.eval()(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    net.train()
    r = onnx_latency(path, torch.randn(2, 1, 16, 16), threads=1, warmup=1, repeats=4)
    assert r.backend == "onnxruntime" and r.batch_size == 2 and len(r.times_ms) == 4
    assert 0 < r.median_ms < 10_000


def test_onnx_3d_and_measure_onnx_latency(tmp_path):
    net = _randomise_bn(_TinyUNet(3))
    x = torch.randn(1, 1, 8, 8, 8)
    path = export_onnx(net, x, tmp_path / "net3d.onnx", dynamic_batch=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, net.eval()(x).numpy(), atol=1e-4, rtol=1e-4)
    m = measure(net, x, onnx=True, repeats=2, warmup=1, memory=False)
    assert m.onnx_latency_ms is not None and m.onnx_latency_ms > 0


def test_torchscript_round_trip(tmp_path):
    net = _randomise_bn(_TinyUNet(2))
    x = torch.randn(2, 1, 16, 16)
    path = export_torchscript(net, x, tmp_path / "net.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.13
        loaded = torch.jit.load(str(path))
    y = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(y), net.eval()(y))


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum().item() > 0 else x * 3


def test_failed_export_raises_and_leaves_no_file(tmp_path):
    with pytest.raises(TraceError, match="ONNX export of _DataDependent failed"):
        export_onnx(_DataDependent(), torch.randn(1, 1, 4, 4), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
