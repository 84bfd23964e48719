"""Cost table of a few medical-imaging networks: params, MACs, latency (PyTorch and ONNX Runtime),
peak inference memory and checkpoint size.

    .venv/bin/python benchmarks/measure.py                 # all models, 2 threads
    .venv/bin/python benchmarks/measure.py --models unet2d,resnet18 --threads 1 --repeats 10
    .venv/bin/python benchmarks/measure.py --no-onnx --batch-size 8

The "convT x stride" column is what a counter that applies the forward-convolution formula to the
*output* of transposed convolutions would report (Torch-Pruning's overcount, see
docs/peers.md); medprune counts them over their inputs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from medprune.measure import count_macs, macs_by_module, measure


class SmallCNN(nn.Module):
    """Four conv-bn-relu blocks (two strided) and a linear head, for 1x64x64 images."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate((width, width, 2 * width, 2 * width)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=1 + i % 2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _unet(dims: int) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(dims, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def _resnet18() -> nn.Module:
    from monai.networks.nets import resnet18

    return resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "small_cnn": (SmallCNN, (1, 1, 64, 64)),
    "unet2d": (lambda: _unet(2), (1, 1, 128, 128)),
    "resnet18": (_resnet18, (1, 1, 128, 128)),
    "unet3d": (lambda: _unet(3), (1, 1, 64, 64, 64)),
}


def _transposed_overcount(model: nn.Module, x: torch.Tensor) -> int:
    """MACs if every transposed conv were counted over its output positions."""
    per_module = macs_by_module(model, x)
    modules = dict(model.named_modules())
    extra = 0
    for name, macs in per_module.items():
        module = modules[name]
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            extra += macs * (math.prod(module.stride) - 1)
    return count_macs(model, x) + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX export and ORT timing")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; available: {', '.join(MODELS)}")

    torch.manual_seed(0)
    header = (
        "| model | input | params | MACs (G) | convT x stride (G) | torch ms | ORT ms "
        "| peak MB | size MB | wall s |"
    )
    print(
        f"threads={args.threads} repeats={args.repeats} warmup={args.warmup} "
        f"device={args.device} torch={torch.__version__}"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in names:
        factory, shape = MODELS[name]
        model = factory().eval()
        x = torch.randn(*shape)
        start = time.perf_counter()
        m = measure(
            model,
            x,
            onnx=not args.no_onnx,
            threads=args.threads,
            repeats=args.repeats,
            warmup=args.warmup,
            device=args.device,
            batch_size=args.batch_size,
        )
        naive = _transposed_overcount(model, x) * m.batch_size // shape[0]
        ort_ms = f"{m.onnx_latency_ms:.2f}" if m.onnx_latency_ms is not None else "-"
        print(
            f"| {name} | {'x'.join(map(str, m.input_shape[0]))} | {m.params:,} "
            f"| {m.macs / 1e9:.3f} | {naive / 1e9:.3f} | {m.latency_ms:.2f} | {ort_ms} "
            f"| {m.peak_memory_bytes / 2**20:.1f} | {m.size_bytes / 2**20:.2f} "
            f"| {time.perf_counter() - start:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
