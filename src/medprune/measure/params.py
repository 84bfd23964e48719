"""Parameter count and serialized size."""

from __future__ import annotations

import io

import torch
from torch import nn


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad=True``.

    Returns:
        The number of scalar parameters. Buffers (BatchNorm running statistics) are not counted.
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` written to an in-memory buffer.

    This is the size of the checkpoint a user would ship: parameters and buffers (BatchNorm
    running statistics included) plus the pickle's small overhead.
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
