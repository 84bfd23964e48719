"""The central nouns of the engine: :class:`ChannelSlice`, :class:`ActivationSite`, :class:`PruningGroup`.

A *group* is a set of channels that must be removed together. Its ``n_channels`` channels are
numbered ``0 .. n_channels-1`` ("group channels"); each member slice says where group channel ``i``
lives in one parameter or buffer.

Worked example: ``conv1 (3->8) -> bn1 -> relu -> conv2 (8->4)``. One group with ``n_channels=8``::

    ChannelSlice("conv1", "weight",       dim=0, index=[[0],[1],...,[7]], role="out")
    ChannelSlice("conv1", "bias",         dim=0, index=[[0],...,[7]],     role="out")
    ChannelSlice("bn1",   "weight",       dim=0, index=[[0],...,[7]],     role="per_channel")
    ChannelSlice("bn1",   "bias" / "running_mean" / "running_var", ...    role="per_channel")
    ChannelSlice("conv2", "weight",       dim=1, index=[[0],...,[7]],     role="in")
    sites: ActivationSite("conv1", channel_index=[0..7], kind="producer"),
           ActivationSite("bn1",   channel_index=[0..7], kind="norm")

A concatenation ``cat([a(8), b(4)]) -> conv3`` gives two groups; the one of ``b`` holds
``ChannelSlice("conv3", "weight", dim=1, index=[[8],[9],[10],[11]], role="in")``.
A flatten into a linear layer gives ``index`` rows of length ``H*W`` (one channel = ``H*W`` inputs).
A residual add couples the producers of both operands into one group (several ``role="out"`` members).

Criteria read weights through :meth:`PruningGroup.out_weights` / :meth:`PruningGroup.norm_weights`
and activations through ``sites`` (forward hooks on the named modules, output channel
``channel_index[i]`` carries group channel ``i``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

SliceRole = Literal["out", "in", "per_channel"]
SiteKind = Literal["producer", "norm"]


@dataclass(frozen=True, eq=False)
class ChannelSlice:
    """Where the group's channels live in one parameter or buffer.

    Attributes:
        module_name: dotted name from ``model.named_modules()``.
        tensor_name: parameter or buffer attribute on that module (``"weight"``, ``"bias"``,
            ``"running_mean"``, ``"running_var"``, ...).
        dim: tensor dimension that indexes channels (0 for a conv's output side, 1 for its input
            side; 1 and 0 for a transposed conv).
        index: int64 tensor ``(n_channels, k)``: positions along ``dim`` that belong to group
            channel ``i``. ``k`` is 1 except after a flatten (``k = H*W``), for grouped convs
            (one group channel = one conv group: ``k`` = channels per conv group) and for
            channels that are repeated / concatenated several times (``x.repeat(1, 16, ...)``).
        role: ``"out"`` a producer's output channels (conv / transposed conv / linear weight and
            bias), ``"in"`` a consumer's input channels, ``"per_channel"`` per-channel layers
            (norm affine parameters and running statistics, PReLU slopes).
    """

    module_name: str
    tensor_name: str
    dim: int
    index: torch.Tensor
    role: SliceRole

    def positions(self, channel_idx: torch.Tensor) -> torch.Tensor:
        """Flat positions along ``dim`` for group channels ``channel_idx`` ``(m,)`` -> ``(m*k,)``."""
        return self.index[channel_idx].reshape(-1)


@dataclass(frozen=True, eq=False)
class ActivationSite:
    """A module whose forward output carries the group's channels (for data-driven criteria).

    Attributes:
        module_name: dotted module name; hook its forward output ``(B, C, *S)`` (or ``(B, C)``).
        channel_index: int64 ``(n_channels,)``; output channel ``channel_index[i]`` is group channel ``i``.
        kind: ``"producer"`` (conv / linear output, before any norm) or ``"norm"`` (output of the
            per-channel norm layer that follows the producer; the Taylor "gate").
    """

    module_name: str
    channel_index: torch.Tensor
    kind: SiteKind


@dataclass(eq=False)
class PruningGroup:
    """Channels that must be removed together, with every slice that removing them touches.

    Attributes:
        key: stable, human-readable identifier derived from the model's structure (same on a
            fresh copy of the same architecture); used in saved plans.
        n_channels: number of group channels.
        slices: every parameter / buffer slice of the group.
        sites: activation sites for data-driven criteria (may be empty for pinned groups).
        prunable: False when an op without a rule (or a user ``ignore``) touches the channels.
        pinned_reason: why it is not prunable (names the op / module), else None.
        channel_multiple: channels may only be removed in aligned blocks of this many (GroupNorm
            groups, grouped convolutions); block ``b`` is channels ``b*m .. b*m+m-1``.
        min_channels: the fewest channels the group may keep.
        description: one readable line, e.g. ``"conv1.out (8 ch) -> bn1 -> conv2.in"``.
        zero_exact: True when zeroing the group's channels (``PruningGraph.zero_out``) makes every
            consumer see exact zeros, so zeroing then removing them leaves the output unchanged.
            False when a channel reaches a consumer through an op with ``f(0) != 0`` (sigmoid,
            adding a constant); removal is still valid, only not output-preserving.
    """

    key: str
    n_channels: int
    slices: tuple[ChannelSlice, ...]
    sites: tuple[ActivationSite, ...] = ()
    prunable: bool = True
    pinned_reason: str | None = None
    channel_multiple: int = 1
    min_channels: int = 1
    description: str = ""
    zero_exact: bool = True
    _model: nn.Module | None = field(default=None, repr=False)

    def bind(self, model: nn.Module) -> PruningGroup:
        """Attach the model whose tensors the slices refer to; returns self."""
        self._model = model
        return self

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            raise RuntimeError(
                f"group {self.key!r} is not bound to a model; call group.bind(model)."
            )
        return self._model

    def tensor(self, s: ChannelSlice) -> torch.Tensor:
        """The live parameter or buffer that slice ``s`` refers to."""
        module = self.model.get_submodule(s.module_name)
        return getattr(module, s.tensor_name)

    def members(self, role: SliceRole, tensor_name: str | None = None) -> list[ChannelSlice]:
        """Slices with the given role (and tensor name, if given)."""
        return [
            s
            for s in self.slices
            if s.role == role and (tensor_name is None or s.tensor_name == tensor_name)
        ]

    def gather(self, s: ChannelSlice) -> torch.Tensor:
        """Tensor of slice ``s`` rearranged as ``(n_channels, -1)``: row ``i`` is group channel ``i``."""
        t = self.tensor(s).detach()
        picked = t.index_select(s.dim, s.index.reshape(-1).to(t.device))  # a copy, not a view
        rows = picked.movedim(s.dim, 0)  # (n_channels*k, *rest)
        return rows.reshape(self.n_channels, -1).contiguous()

    def out_weights(self) -> list[torch.Tensor]:
        """Each producer's filters as ``(n_channels, fan)``: conv ``(C_out, C_in/g * prod(K))``."""
        return [self.gather(s) for s in self.members("out", "weight")]

    def norm_weights(self) -> list[torch.Tensor]:
        """Each per-channel layer's affine scale as ``(n_channels,)`` (BN gamma, IN/GN weight)."""
        found = []
        for s in self.members("per_channel", "weight"):
            module = self.model.get_submodule(s.module_name)
            if isinstance(module, nn.PReLU):
                continue
            found.append(self.channel_values(s))
        return found

    def channel_values(self, s: ChannelSlice) -> torch.Tensor:
        """One value per group channel ``(n_channels,)`` of a per-channel slice.

        Where a group channel spans ``k > 1`` positions (a whole block of a grouped convolution),
        the value is the root mean square over them, so ``abs()`` and ``**2`` keep their meaning.
        """
        rows = self.gather(s)  # (n_channels, k)
        return rows[:, 0] if rows.shape[1] == 1 else rows.pow(2).mean(1).sqrt()

    def channel_blocks(self) -> torch.Tensor:
        """Block id of each group channel ``(n_channels,)`` given ``channel_multiple``."""
        return torch.arange(self.n_channels) // self.channel_multiple

    def __repr__(self) -> str:
        state = "prunable" if self.prunable else f"pinned: {self.pinned_reason}"
        return f"PruningGroup({self.key!r}, n_channels={self.n_channels}, {state})"
