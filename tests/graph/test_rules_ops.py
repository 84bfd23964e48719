"""Rules for channel padding / repeat / slicing, unknown ops, layer norm, sharing, multi-I/O."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rule_models import X2, ConvBnRelu, keys
from torch import nn

from medprune.errors import ConfigError
from medprune.graph import build_graph, prune_channels


class PadShortcut(nn.Module):
    """CIFAR ResNet option A: the shortcut is padded with zero channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1, stride=2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
        return self.head(F.relu(self.conv2(x) + short))


def test_channel_padding_pins_only_padded_channels(compare):
    graph = build_graph(PadShortcut(), X2)
    pinned = [g for g in graph.groups if not g.prunable and "conv2" in g.key]
    assert pinned and all("channel padding" in g.pinned_reason for g in pinned)
    coupled = graph.group("conv1.out+conv2.out[2:6]")
    assert coupled.prunable and coupled.n_channels == 4
    compare(PadShortcut(), X2)


class RepeatInput(nn.Module):
    """VNet style: a residual of a map repeated along channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        return self.head(self.conv2(x) + x.repeat(1, 4, 1, 1))


def test_repeat_along_channels_is_exact(compare):
    graph = build_graph(RepeatInput(), X2)
    g = graph.group("conv1.out+conv2.out")
    assert g.n_channels == 2
    (conv2_out,) = g.members("out", "weight")[1:] or [
        s for s in g.members("out", "weight") if s.module_name == "conv2"
    ]
    assert conv2_out.index.shape == (2, 4)
    compare(RepeatInput(), X2)


class SliceChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.conv(x)[:, :4])


def test_channel_slicing_pins_and_reports():
    graph = build_graph(SliceChannels(), X2)
    assert not graph.group("conv.out").prunable
    assert any(op.startswith("aten.slice") for op, _ in graph.pinned)


class GluGate(nn.Module):
    """A gated unit: ``a, b = conv(x).chunk(2, 1); a * sigmoid(b)`` (or ``tensor_split``)."""

    def __init__(self, width: int = 8, op: str = "chunk") -> None:
        super().__init__()
        self.op = op
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Conv2d(width // 2, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        a, b = y.chunk(2, dim=1) if self.op == "chunk" else torch.tensor_split(y, 2, dim=1)
        return self.head(F.relu(a) * torch.sigmoid(b))


@pytest.mark.parametrize("op", ["chunk", "tensor_split"])
def test_chunk_into_equal_pieces_prunes_in_pairs(compare, op):
    graph = build_graph(GluGate(8, op), X2)
    g = graph.group("conv.out")
    assert g.prunable and g.n_channels == 4  # 8 conv filters = 4 coupled (a_j, b_j) pairs
    (w,) = g.members("out", "weight")
    assert w.index.tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    pruned, _, plan, _ = compare(GluGate(8, op), X2)
    removed = plan["conv.out"].numel()
    assert pruned.conv.out_channels == 8 - 2 * removed
    assert pruned.head.in_channels == 4 - removed


class ChunkPaths(nn.Module):
    """chunk(2) whose pieces go to different convs: only the chunk rule ties a_j to b_j."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Conv2d(4, 2, 1)
        self.right = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        a, b = F.relu(self.conv(x)).chunk(2, dim=1)
        return self.left(a) + self.right(b)


def test_chunk_pieces_on_separate_paths_stay_equal(compare):
    graph = build_graph(ChunkPaths(), X2)
    (w,) = graph.group("conv.out").members("out", "weight")
    assert w.index.tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    pruned, _, plan, _ = compare(ChunkPaths(), X2)
    assert pruned.left.in_channels == pruned.right.in_channels == 4 - plan["conv.out"].numel()


def test_chunk_of_indivisible_channels_pins():
    model = GluGate(8)
    model.conv = nn.Conv2d(3, 7, 3, padding=1)  # chunk(2) of 7 channels: pieces of 4 and 3
    model.head = nn.Conv2d(4, 2, 1)

    def forward(x):
        a, b = model.conv(x).chunk(2, dim=1)
        return model.head(a) + b.sum(1, keepdim=True)

    model.forward = forward
    graph = build_graph(model, X2)
    assert not graph.group("conv.out").prunable
    assert any(op.startswith("aten.chunk") for op, _ in graph.pinned)


class SplitSizes(nn.Module):
    """Two halves of a conv output multiplied, cut with sizes that are literals in the code or
    derived from the channel count (the trace shows the same integers for both)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        half = y.shape[1] // 2
        if self.how == "split":
            a, b = torch.split(y, 4, dim=1)
        elif self.how == "split_with_sizes":
            a, b = torch.split(y, [4, 4], dim=1)
        elif self.how == "derived_split":
            a, b = y.split(half, dim=1)  # MONAI LocalNet / RegUNet style
        elif self.how == "derived_split_with_sizes":
            a, b = torch.split(y, [half, half], dim=1)
        elif self.how == "derived_slices":
            a, b = y[:, :half], y[:, half:]
        elif self.how == "derived_narrow":
            a, b = y.narrow(1, 0, half), y.narrow(1, half, half)
        else:
            a, b = torch.narrow(y, 1, 0, 4), y[:, 4:]
        return self.head(a * b)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("split", "did not follow the channel count"),
        ("split_with_sizes", "did not follow the channel count"),
        ("narrow", "did not follow the channel count"),
    ],
)
def test_fixed_size_splits_pin_with_a_reason(how, reason):
    graph = build_graph(SplitSizes(how), X2)
    g = graph.group("conv.out")
    assert not g.prunable
    assert reason in g.pinned_reason


@pytest.mark.parametrize(
    "how", ["derived_split", "derived_split_with_sizes", "derived_slices", "derived_narrow"]
)
def test_splits_derived_from_the_channel_count_prune_exactly(compare, how):
    graph = build_graph(SplitSizes(how), X2)
    g = graph.group("conv.out")
    assert g.prunable and g.n_channels == 4  # (a_j, b_j) pairs, confirmed by the probe
    pruned, _, plan, _ = compare(SplitSizes(how), X2)
    assert pruned.conv.out_channels == 8 - 2 * plan["conv.out"].numel()


class ChunkSpatial(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        top, bottom = self.conv(x).chunk(2, dim=2)
        return self.head(torch.cat([bottom, top], dim=2))


def test_chunk_along_space_passes_channels_through(compare):
    assert build_graph(ChunkSpatial(), X2).group("conv.out").prunable
    compare(ChunkSpatial(), X2)


class Shuffles(nn.Module):
    """conv -> pixel_shuffle / pixel_unshuffle / channel_shuffle -> conv."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.shuffle = {
            "pixel_shuffle": nn.PixelShuffle(2),
            "pixel_unshuffle": nn.PixelUnshuffle(2),
            "channel_shuffle": nn.ChannelShuffle(4),
        }[op]
        c_out = {"pixel_shuffle": 4, "pixel_unshuffle": 64, "channel_shuffle": 16}[op]
        self.head = nn.Conv2d(c_out, 2, 1)

    def forward(self, x):
        return self.head(F.relu(self.shuffle(F.relu(self.conv(x)))))


@pytest.mark.parametrize(
    ("op", "n_channels", "per_channel"),
    [("pixel_shuffle", 4, 4), ("pixel_unshuffle", 16, 1), ("channel_shuffle", 4, 4)],
)
def test_pixel_and_channel_shuffles_prune_whole_blocks(compare, op, n_channels, per_channel):
    graph = build_graph(Shuffles(op), X2)
    g = graph.group("conv.out")
    assert g.prunable and g.n_channels == n_channels
    (w,) = [s for s in g.members("out", "weight") if s.module_name == "conv"]
    assert w.index.shape == (n_channels, per_channel)
    pruned, _, plan, _ = compare(Shuffles(op), X2)
    assert pruned.conv.out_channels == 16 - per_channel * plan["conv.out"].numel()


def test_channel_shuffle_couples_position_i_of_every_group():
    graph = build_graph(Shuffles("channel_shuffle"), X2)
    (w,) = [s for s in graph.group("conv.out").members("out", "weight") if s.module_name == "conv"]
    assert w.index.tolist() == [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]


class ChannelSplitReshapes(nn.Module):
    """MONAI's SubpixelUpsample (a reshape that splits the channel dim) or a hand-written
    group norm (``x.view(B, groups, -1)``): the same traced reshape, opposite meanings."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        from monai.networks.blocks import SubpixelUpsample

        self.kind = kind
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = SubpixelUpsample(2, 8, 8, scale_factor=2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "subpixel":
            return self.head(self.up(y))
        b, c, h, w = y.shape
        if self.kind == "manual_group_norm":
            g = y.view(b, 2, -1)
            g = (g - g.mean(-1, keepdim=True)) / (g.std(-1, keepdim=True) + 1e-5)
        else:  # the same, written with the channel split kept apart from the spatial dims
            g = y.view(b, 2, c // 2, h, w)
            g = (g - g.mean((2, 3, 4), keepdim=True)) / (g.std((2, 3, 4), keepdim=True) + 1e-5)
        return self.head(g.view(b, c, h, w))


def test_subpixel_upsampling_prunes_whole_blocks(compare):
    graph = build_graph(ChannelSplitReshapes("subpixel"), X2)
    g = graph.group("up.conv_block.out")
    assert g.prunable and g.n_channels == 8  # 32 conv filters = 8 blocks of 2 x 2 sub-pixels
    (w,) = g.members("out", "weight")
    assert w.index.shape == (8, 4) and w.index[1].tolist() == [4, 5, 6, 7]
    pruned, _, plan, _ = compare(ChannelSplitReshapes("subpixel"), X2)
    assert pruned.up.conv_block.out_channels == 32 - 4 * plan["up.conv_block.out"].numel()


@pytest.mark.parametrize("kind", ["manual_group_norm", "manual_group_norm_5d"])
def test_reshape_with_a_fixed_block_count_pins_with_a_reason(kind):
    graph = build_graph(ChannelSplitReshapes(kind), X2)
    reason = graph.group("conv.out").pinned_reason
    assert not graph.group("conv.out").prunable
    assert "splits the channel dim" in reason and "groups" in reason
    assert not graph.probed  # not the sub-pixel pattern: nothing to probe


class LiteralSubpixel(nn.Module):
    """A hand-written pixel shuffle with its sizes typed in: the probe must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        b, _, h, w = y.shape
        y = y.view(b, 2, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, 2, 2 * h, 2 * w)
        return self.head(y)


def test_literal_subpixel_reshape_is_probed_and_pinned():
    graph = build_graph(LiteralSubpixel(), X2)
    assert [(kind, ok) for _, kind, ok in graph.probed] == [("channel_blocks", False)]
    assert "did not follow the channel count" in graph.group("conv.out").pinned_reason


class CumsumChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.cumsum(self.conv(x), dim=1))


def test_unknown_op_pins_and_is_reported():
    graph = build_graph(CumsumChannels(), X2)
    assert not graph.group("conv.out").prunable
    assert "no propagation rule for aten.cumsum" in graph.group("conv.out").pinned_reason
    assert any(op.startswith("aten.cumsum") for op, _ in graph.pinned)


class LayerNormChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        y = self.conv(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        return self.head(self.norm(y))


def test_layer_norm_over_channels_pins():
    graph = build_graph(LayerNormChannels(), X2)
    assert "layer_norm over the channel dim" in graph.group("conv.out").pinned_reason


class SigmoidPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.sigmoid(self.conv(x)))


def test_non_zero_preserving_op_marks_group_inexact():
    graph = build_graph(SigmoidPath(), X2)
    g = graph.group("conv.out")
    assert g.prunable and not g.zero_exact


class Shared(nn.Module):
    """One conv called twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        return self.head(self.shared(F.relu(self.shared(x))))


def test_weight_sharing_is_consistent(compare):
    graph = build_graph(Shared(), X2)
    g = graph.group("stem.out+shared.out")
    assert g.prunable
    compare(Shared(), X2)


class UpDown(nn.Module):
    """Transposed conv, pooling, interpolation and a U-Net skip concat."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        tconv = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        self.down = conv(3, 8, 3, padding=1)
        self.mid = conv(8, 16, 3, padding=1)
        self.up = tconv(16, 8, 2, stride=2)
        self.extra = conv(8, 4, 1)
        self.head = conv(20, 2, 1)
        self.dims = dims

    def forward(self, x):
        a = F.relu(self.down(x))
        b = F.relu(self.mid(F.max_pool2d(a, 2) if self.dims == 2 else F.avg_pool3d(a, 2)))
        c = self.up(b)
        d = F.interpolate(
            self.extra(F.avg_pool2d(a, 2) if self.dims == 2 else F.max_pool3d(a, 2)),
            scale_factor=2.0,
        )
        return self.head(torch.cat([a, c, d], dim=1))


@pytest.mark.parametrize("dims", [2, 3])
def test_transposed_conv_pool_interpolate_concat(compare, dims):
    x = torch.randn(2, 3, 8, 8) if dims == 2 else torch.randn(2, 3, 4, 8, 8)
    graph = build_graph(UpDown(dims), x)
    assert {"down.out", "mid.out", "up.out", "extra.out"} <= set(keys(graph))
    up = graph.group("up.out")
    assert {(s.module_name, s.dim) for s in up.members("out", "weight")} == {("up", 1)}
    model, _, _, _ = compare(UpDown(dims), x, min_groups=4)
    assert model.up.out_channels == model.up.weight.shape[1]


def test_ignore_pins_module(compare):
    graph = build_graph(ConvBnRelu(), X2, ignore=["conv1"])
    assert not graph.group("conv1.out").prunable
    assert ("conv1", "listed in ignore") in graph.pinned
    graph = build_graph(ConvBnRelu(), X2, ignore=[nn.BatchNorm2d])
    assert not graph.group("conv1.out").prunable


def test_keys_are_stable_across_copies():
    a = [g.key for g in build_graph(PadShortcut(), X2).groups]
    b = [g.key for g in build_graph(PadShortcut(), X2).groups]
    assert a == b and len(set(a)) == len(a)


def test_unknown_key_suggests():
    graph = build_graph(ConvBnRelu(), X2)
    with pytest.raises(ConfigError, match="Did you mean 'conv1.out'"):
        graph.group("conv1.ot")


def test_stale_graph_after_pruning():
    model = ConvBnRelu()
    graph = build_graph(model, X2)
    prune_channels(model, graph, {"conv1.out": [0, 1]})
    with pytest.raises(ConfigError, match="stale"):
        graph.group("conv1.out")


class TwoInTwoOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(1, 8, 3, padding=1)
        self.head1 = nn.Conv2d(8, 2, 1)
        self.head2 = nn.Linear(8, 3)

    def forward(self, x, y):
        h = F.relu(self.a(x) + self.b(y))
        return self.head1(h), self.head2(h.mean(dim=(2, 3)))


def test_multiple_inputs_and_outputs(compare):
    x = (torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8))
    graph = build_graph(TwoInTwoOut(), x)
    assert graph.group("a.out+b.out").prunable
    assert not graph.group("a.in").prunable and not graph.group("b.in").prunable
    assert not graph.group("head1.out").prunable and not graph.group("head2.out").prunable
    assert len(graph.output_shapes) == 2
    compare(TwoInTwoOut(), x)


class InplaceOnView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        y[:, :, :2] += 1.0  # writes into a view of y
        return self.head(y)


def test_inplace_write_into_view_pins():
    graph = build_graph(InplaceOnView(), X2)
    assert not graph.group("conv.out").prunable
    assert graph.pinned and any(
        "view" in reason or "aten." in where for where, reason in graph.pinned
    )


class SpatialOps(nn.Module):
    """Permute / reshape round trip, softmax over space, spatial mean, stack, dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 8)
        self.head = nn.Conv2d(8, 2, 1)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        y = F.relu(self.conv(x))
        b, _, h, w = y.shape
        tokens = self.fc(y.flatten(2).transpose(1, 2))  # (B, HW, C) -> linear over C
        y = tokens.transpose(1, 2).reshape(b, -1, h, w)  # channel count read at run time
        pooled = y.mean(dim=(2, 3), keepdim=True)
        z = torch.stack([y, y * pooled], dim=0).sum(0)
        return self.head(self.drop(z))


def test_token_ops_and_spatial_reductions(compare):
    graph = build_graph(SpatialOps(), X2)
    assert graph.group("conv.out").prunable and graph.group("fc.out").prunable
    compare(SpatialOps(), X2, min_groups=2)


class OddSlice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(self.conv(x)[:, 1:4])  # not one of k equal pieces: nothing to probe


def test_slice_that_is_not_an_equal_piece_pins_without_a_probe():
    reason = build_graph(OddSlice(), X2).group("conv.out").pinned_reason
    assert "the trace cannot tell" in reason


class SplitActs(nn.Module):
    """Two halves through different parameter-free ops, concatenated back: a literal split still
    runs after pruning (pieces of 4 and 2) but mixes the halves silently; only the probe's size
    check catches it."""

    def __init__(self, derived: bool) -> None:
        super().__init__()
        self.derived = derived
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        a, b = y.split(y.shape[1] // 2 if self.derived else 4, dim=1)
        return self.head(torch.cat([F.relu(a), torch.tanh(b)], dim=1))


def test_probe_refuses_a_literal_split_that_still_runs():
    graph = build_graph(SplitActs(derived=False), X2)
    assert [(kind, ok) for _, kind, ok in graph.probed] == [("equal_split", False)]
    assert not graph.group("conv.out").prunable


def test_probe_confirms_the_derived_split_and_it_prunes_exactly(compare):
    graph = build_graph(SplitActs(derived=True), X2)
    assert [(kind, ok) for _, kind, ok in graph.probed] == [("equal_split", True)]
    compare(SplitActs(derived=True), X2)
