"""Cost of each importance criterion relative to one forward pass, and its peak memory.

    .venv/bin/python benchmarks/criteria.py                       # ResNet-56 + MONAI UNet, 128 px
    .venv/bin/python benchmarks/criteria.py --models resnet56 --criteria hrank,taylor
    .venv/bin/python benchmarks/criteria.py --no-memory --images 32 --size 64

For each model, the calibration set is ``--images`` random images (batches of ``--batch-size``)
with random labels (class indices for ResNet-56, masks for the UNet). "x forward" is the
criterion's wall time divided by one eval-mode, no-grad forward pass over the same images.
Targets: weight-only criteria well under 1x; ``beta_rank``, ``taylor``, ``taylor_gn`` <= 3x;
``hrank`` <= 10x.

Memory: each (model, criterion, n_images) runs in a fresh child process that samples its resident
memory during the criterion call and reports the peak above the level just before the call (one
batch of activations, autograd buffers for gradient criteria, and the statistics). Statistics are
streamed, so the figures must not grow with the number of images. With the default batch of 16,
16 images are a single batch, whose peak is lower for criteria whose statistics buffers are
created during that first pass (``beta_rank``: the buffers fill up layer by layer while the large
early activations are already gone); from the second batch on the peak is constant.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch

import medprune as mp

MODELS: dict[str, tuple[str, dict[str, Any], int, bool]] = {
    # name: (registry name, kwargs, input channels, segmentation?)
    "resnet56": ("resnet56", {"num_classes": 2}, 3, False),
    "monai_unet": (
        "monai.UNet",
        {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 2,
            "channels": (16, 32, 64, 128, 256),
            "strides": (2, 2, 2, 2),
            "num_res_units": 2,
        },
        1,
        True,
    ),
}


def batches(spec: tuple[str, dict[str, Any], int, bool], n: int, size: int, bs: int) -> Iterator:
    """Seeded random calibration batches, generated lazily."""
    _, _, c_in, seg = spec
    gen = torch.Generator().manual_seed(0)
    for start in range(0, n, bs):
        b = min(bs, n - start)
        x = torch.randn(b, c_in, size, size, generator=gen)
        y = torch.randint(0, 2, (b, size, size) if seg else (b,), generator=gen)
        yield x, y


def setup(name: str, size: int) -> tuple[Any, Any]:
    reg, kwargs, c_in, _ = MODELS[name]
    model = mp.create_model(reg, **kwargs).eval()
    graph = mp.build_graph(model, torch.randn(1, c_in, size, size))
    return model, graph


def forward_seconds(model: Any, data: list) -> float:
    with torch.no_grad():
        model(data[0][0][:2])  # warm-up
        t0 = time.perf_counter()
        for x, _ in data:
            model(x)
    return time.perf_counter() - t0


class RssSampler(threading.Thread):
    """Samples the resident set size (Linux ``/proc/self/statm``) every few milliseconds."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.rss()
        self.running = True

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)


def child(name: str, criterion: str, n_images: int, size: int, bs: int) -> None:
    """Print the peak RSS increase (MiB) above the pre-call RSS caused by one criterion call."""
    torch.set_num_threads(1)
    model, graph = setup(name, size)
    with torch.no_grad():  # warm-up: one-time kernel / allocator set-up is not statistics memory
        for x, _ in batches(MODELS[name], 2 * bs, size, bs):
            model(x)
    gc.collect()
    sampler = RssSampler()
    before = sampler.rss()
    sampler.start()
    mp.get_criterion(criterion)(graph, batches(MODELS[name], n_images, size, bs))
    sampler.running = False
    sampler.join()
    print(json.dumps({"delta_mib": (sampler.peak - before) / 2**20}))


def memory(name: str, criterion: str, n_images: int, size: int, bs: int) -> float:
    cmd = [sys.executable, __file__, "--child", name, criterion, str(n_images)]
    cmd += ["--size", str(size), "--batch-size", str(bs)]
    # a fixed mmap threshold makes glibc return freed tensor memory at once, so the resident
    # size tracks live tensors instead of the allocator's high-water mark
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return float(json.loads(out.strip().splitlines()[-1])["delta_mib"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--criteria", default=",".join(mp.list_criteria()))
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "CRITERION", "N_IMAGES"))
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.size, args.batch_size)
        return 0
    torch.set_num_threads(args.threads)
    criteria = args.criteria.split(",")
    print(
        f"{args.images} images of {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.threads} thread(s), torch {torch.__version__}\n"
    )
    header = "| model | criterion | seconds | x forward |"
    if not args.no_memory:
        header += " peak MiB (16 img) | peak MiB (64 img) | peak MiB (128 img) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.models.split(","):
        model, graph = setup(name, args.size)
        data = list(batches(MODELS[name], args.images, args.size, args.batch_size))
        fwd = forward_seconds(model, data)
        tail = "" if args.no_memory else " | | |"
        print(f"| {name} | (forward pass) | {fwd:.2f} | 1.00 |{tail}")
        for c in criteria:
            crit = mp.get_criterion(c)
            t0 = time.perf_counter()
            crit(graph, data if crit.needs_data else None)
            sec = time.perf_counter() - t0
            row = f"| {name} | {c} | {sec:.2f} | {sec / fwd:.2f} |"
            if not args.no_memory:
                if crit.needs_data:
                    peaks = [memory(name, c, n, args.size, args.batch_size) for n in (16, 64, 128)]
                    row += "".join(f" {m:.0f} |" for m in peaks)
                else:
                    row += " - | - | - |"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
