"""Building blocks shared by the residual models (tiny, CIFAR and small ResNets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medprune.errors import ConfigError
from medprune.models._layers import batch_norm, conv, strided_subsample

__all__ = ["BasicBlock"]


class BasicBlock(nn.Module):
    """``conv3x3-BN-ReLU-conv3x3-BN + shortcut -> ReLU`` (He et al. 2016).

    Args:
        spatial_dims: 2 or 3.
        c_in: input channels.
        c_out: output channels.
        stride: stride of the first conv (and of the shortcut).
        shortcut: ``"A"``: parameter-free subsample then zero-pad the new channels (``F.pad``;
            ``c_out - c_in`` split as evenly as possible, the extra one after); ``"B"``: 1x1 conv +
            BN projection when the shape changes. Identity when it does not change.

    Shapes: ``(B, c_in, *S) -> (B, c_out, *S / stride)``.
    """

    def __init__(
        self, spatial_dims: int, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B"
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ConfigError(
                f"shortcut must be 'A' (zero-pad) or 'B' (projection); got {shortcut!r}."
            )
        if shortcut == "A" and c_out < c_in:
            raise ConfigError(f"shortcut 'A' cannot shrink channels: c_in={c_in} > c_out={c_out}.")
        d = spatial_dims
        self.conv1 = conv(d, c_in, c_out, 3, stride=stride, bias=False)
        self.bn1 = batch_norm(d, c_out)
        self.relu = nn.ReLU()
        self.conv2 = conv(d, c_out, c_out, 3, bias=False)
        self.bn2 = batch_norm(d, c_out)
        self.stride = stride
        self.pad = (0, 0)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if shortcut == "B":
                self.shortcut = nn.Sequential(
                    conv(d, c_in, c_out, 1, stride=stride, bias=False), batch_norm(d, c_out)
                )
            else:
                extra = c_out - c_in
                self.pad = (extra // 2, extra - extra // 2)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.shortcut, nn.Identity):
            return self.shortcut(x)
        if self.pad == (0, 0) and self.stride == 1:
            return x
        x = strided_subsample(x, self.stride)  # (B, c_in, *S')
        return F.pad(x, (0, 0) * (x.dim() - 2) + self.pad)  # (B, c_out, *S')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, *S) -> (B, c_out, *S')``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self._shortcut(x))
