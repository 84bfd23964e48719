"""Random small CNNs built from the blocks medical networks use, for property tests of the engine.

``random_net(seed)`` stacks 3-6 blocks drawn from: conv + norm + activation, residual add,
concatenation of two branches, squeeze-excitation gate, GLU gate (``chunk``), ``chunk`` pieces on
separate paths, halves split by a
size derived from the channel count, depthwise / grouped conv, pixel (un)shuffle, channel shuffle,
down / up sampling (strided conv, pooling, transposed conv, interpolation), and a segmentation
or classification head. Every choice is drawn from ``random.Random(seed)``, so a failing seed is
a reproducible model.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 8  # input side; every block keeps it divisible by 2 where it down-samples


class Ops:
    """The 2D or 3D versions of the layers and functions the blocks use."""

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.Conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.ConvT = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        self.BN = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.IN = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
        self.max_pool = F.max_pool2d if dims == 2 else F.max_pool3d
        self.avg_pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
        self.pool_to_1 = F.adaptive_avg_pool2d if dims == 2 else F.adaptive_avg_pool3d
        self.linear_mode = "bilinear" if dims == 2 else "trilinear"


def _norm(ops: Ops, rng: random.Random, c: int) -> nn.Module:
    kind = rng.choice(["batch", "instance", "group", "none"])
    if kind == "batch":
        return ops.BN(c)
    if kind == "instance":
        return ops.IN(c, affine=rng.random() < 0.5)
    if kind == "group" and c % 2 == 0:
        return nn.GroupNorm(2, c)
    return nn.Identity()


def _act(rng: random.Random, c: int) -> nn.Module:
    kind = rng.choice(["relu", "relu_", "prelu", "prelu1", "leaky_", "silu", "gelu"])
    return {
        "relu": lambda: nn.ReLU(),
        "relu_": lambda: nn.ReLU(inplace=True),
        "prelu": lambda: nn.PReLU(c),
        "prelu1": lambda: nn.PReLU(),
        "leaky_": lambda: nn.LeakyReLU(0.1, inplace=True),
        "silu": lambda: nn.SiLU(),
        "gelu": lambda: nn.GELU(),
    }[kind]()


class ConvUnit(nn.Module):
    def __init__(
        self, ops: Ops, rng: random.Random, c_in: int, c_out: int, groups: int = 1
    ) -> None:
        super().__init__()
        self.conv = ops.Conv(c_in, c_out, 3, padding=1, groups=groups)
        self.norm = _norm(ops, rng, c_out)
        self.act = _act(rng, c_out)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvUnit(ops, rng, c, c), ops.Conv(c, c, 3, padding=1))

    def forward(self, x):
        out = self.body(x)
        out += x  # in place, as ResNets write it
        return F.relu(out)


class Concat(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.a = ConvUnit(ops, rng, c, c_out // 2)
        self.b = ConvUnit(ops, rng, c, c_out - c_out // 2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int) -> None:
        super().__init__()
        self.pool = ops.pool_to_1
        self.fc1 = ops.Conv(c, max(c // 2, 1), 1)
        self.fc2 = ops.Conv(max(c // 2, 1), c, 1)

    def forward(self, x):
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x, 1)))))
        return x * w


class GluGate(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.conv = ops.Conv(c, 2 * c_out, 3, padding=1)

    def forward(self, x):
        a, b = self.conv(x).chunk(2, dim=1)
        return F.relu(a) * torch.sigmoid(b)


class DerivedHalves(nn.Module):
    """LocalNet-style: ``split(x.shape[1] // 2)`` and the halves summed."""

    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.conv = ops.Conv(c, 2 * c_out, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        a, b = y.split(y.shape[1] // 2, dim=1)
        return F.relu(a + b)


class SplitPaths(nn.Module):
    """chunk(2) with each piece on its own path (nothing else ties the pieces together)."""

    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.conv = ops.Conv(c, 2 * c, 1)
        self.a = ConvUnit(ops, rng, c, c_out // 2)
        self.b = ConvUnit(ops, rng, c, c_out - c_out // 2)

    def forward(self, x):
        a, b = self.conv(x).chunk(2, dim=1)
        return torch.cat([self.a(a), self.b(b)], dim=1)


class Depthwise(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.dw = ConvUnit(ops, rng, c, c, groups=c)
        self.pw = ops.Conv(c, c_out, 1)

    def forward(self, x):
        return self.pw(self.dw(x))


class Grouped(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        g = 2 if c % 2 == 0 and c_out % 2 == 0 else 1
        self.unit = ConvUnit(ops, rng, c, c_out, groups=g)

    def forward(self, x):
        return self.unit(x)


class PixelShuffles(nn.Module):
    """Space-to-depth, a conv, then depth-to-space back to the same size."""

    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.conv = ops.Conv(4 * c, 4 * c_out, 3, padding=1)

    def forward(self, x):
        return F.pixel_shuffle(F.relu(self.conv(F.pixel_unshuffle(x, 2))), 2)


class ShuffleBlock(nn.Module):
    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.unit = ConvUnit(ops, rng, c, 2 * c_out)
        self.out = ops.Conv(2 * c_out, c_out, 1)

    def forward(self, x):
        return self.out(F.channel_shuffle(self.unit(x), 2))


class DownUp(nn.Module):
    """A tiny U: down-sample, process, up-sample, concatenate the skip."""

    def __init__(self, ops: Ops, rng: random.Random, c: int, c_out: int) -> None:
        super().__init__()
        self.down_kind = rng.choice(["stride", "maxpool", "avgpool"])
        self.up_kind = rng.choice(["transpose", "nearest", ops.linear_mode])
        self.max_pool, self.avg_pool = ops.max_pool, ops.avg_pool
        self.down = ops.Conv(c, c, 3, stride=2, padding=1) if self.down_kind == "stride" else None
        self.mid = ConvUnit(ops, rng, c, c)
        self.up = ops.ConvT(c, c, 2, stride=2) if self.up_kind == "transpose" else None
        self.fuse = ConvUnit(ops, rng, 2 * c, c_out)

    def forward(self, x):
        if self.down is not None:
            d = self.down(x)
        elif self.down_kind == "maxpool":
            d = self.max_pool(x, 2)
        else:
            d = self.avg_pool(x, 2)
        m = self.mid(d)
        if self.up is not None:
            u = self.up(m)
        else:
            mode = self.up_kind
            u = F.interpolate(
                m, scale_factor=2, mode=mode, align_corners=None if mode == "nearest" else False
            )
        return self.fuse(torch.cat([u, x], dim=1))


BLOCKS = ["unit", "residual", "concat", "se", "glu", "halves", "paths", "depthwise", "grouped",
          "pixel", "shuffle", "downup"]  # fmt: skip


BLOCKS_3D = [b for b in BLOCKS if b not in ("pixel", "shuffle")]  # 2D-only ops


class RandomNet(nn.Module):
    """``(B, 2, *S) -> (B, 3, *S)`` (segmentation) or ``(B, 3)``; ``S`` is ``(SIZE,) * dims``."""

    def __init__(self, seed: int, dims: int = 2) -> None:
        super().__init__()
        rng = random.Random(seed)
        ops = Ops(dims)
        self.pool = ops.pool_to_1
        c = rng.choice([4, 6, 8])
        layers: list[nn.Module] = [ConvUnit(ops, rng, 2, c)]
        self.kinds = []
        for _ in range(rng.randint(3, 6)):
            kind = rng.choice(BLOCKS if dims == 2 else BLOCKS_3D)
            self.kinds.append(kind)
            c_out = rng.choice([4, 6, 8])
            if kind == "residual":
                layers.append(Residual(ops, rng, c))
                continue
            if kind == "se":
                layers.append(SqueezeExcite(ops, rng, c))
                continue
            block = {
                "unit": ConvUnit, "concat": Concat, "glu": GluGate, "halves": DerivedHalves,
                "paths": SplitPaths,
                "depthwise": Depthwise, "grouped": Grouped, "pixel": PixelShuffles,
                "shuffle": ShuffleBlock, "downup": DownUp,
            }[kind](ops, rng, c, c_out)  # fmt: skip
            layers.append(block)
            c = c_out
        self.body = nn.Sequential(*layers)
        self.segmentation = rng.random() < 0.5
        self.head = ops.Conv(c, 3, 1) if self.segmentation else nn.Linear(c, 3)

    def forward(self, x):
        y = self.body(x)
        if self.segmentation:
            return self.head(y)
        return self.head(torch.flatten(self.pool(y, 1), 1))


def random_net(seed: int, dims: int = 2) -> RandomNet:
    """A seeded random 2D or 3D network (see the module doc); its weights are seeded too."""
    torch.manual_seed(seed)
    return RandomNet(seed, dims)
