"""Multiply-accumulate counts from ``torch.utils.flop_counter``.

What is counted: every aten op that :class:`torch.utils.flop_counter.FlopCounterMode` knows, i.e.
convolutions (1D/2D/3D, transposed, grouped, dilated), ``mm``/``addmm``/``bmm``/``baddbmm`` (so
``nn.Linear``, ``torch.matmul`` and ``einsum``) and scaled-dot-product attention. FlopCounterMode
counts 2 FLOPs per multiply-accumulate, so MACs = FLOPs / 2. Bias additions, normalisation layers,
activations, pooling, interpolation and element-wise ops are not MACs and are not counted.

Transposed convolutions are counted over the *input* positions (each input element meets
``C_out/groups * prod(K)`` weights), so a stride-2 ``ConvTranspose3d`` is not overcounted by
``stride**3`` as counters that reuse the forward-convolution formula on the output do.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medprune.measure._inputs import as_input_tuple, eval_mode, forward_checked
from medprune.typing import ExampleInputs


def _flop_counts(
    model: nn.Module, example_inputs: ExampleInputs
) -> tuple[int, dict[str, dict[object, int]]]:
    inputs = as_input_tuple(example_inputs)
    counter = FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), counter:
        forward_checked(model, inputs)
    per_module = {name: dict(ops) for name, ops in counter.get_flop_counts().items()}
    return int(counter.get_total_flops()), per_module


def count_macs(model: nn.Module, example_inputs: ExampleInputs) -> int:
    """Multiply-accumulates of one forward pass, in eval mode.

    Args:
        model: the network; it is run once on ``example_inputs`` and left unchanged.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors. MACs scale with ``B``.

    Returns:
        MACs of the conv/transposed-conv/linear/matmul family for the whole batch.

    Raises:
        ShapeMismatchError: the model rejects inputs of this shape.

    Example:
        A ``Conv2d(3, 8, 3, padding=1)`` on ``(1, 3, 8, 8)`` gives
        ``H_out * W_out * C_out * C_in/groups * k_h * k_w = 8 * 8 * 8 * 3 * 9 = 13824``.
    """
    total_flops, _ = _flop_counts(model, example_inputs)
    return total_flops // 2


def macs_by_module(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, int]:
    """MACs executed directly by each module (its own ops, not its children's).

    Args:
        model: the network.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors.

    Returns:
        ``{module_name: macs}`` for every module with non-zero MACs, in ``named_modules`` order.
        Names are those of ``model.named_modules()`` (``""`` is the root, for functional ops
        called in the root's own ``forward``). A module called several times sums its calls.
        The values add up to :func:`count_macs`.
    """
    _, per_module = _flop_counts(model, example_inputs)
    root = type(model).__name__
    totals: dict[str, int] = {}
    for tracker_name, ops in per_module.items():
        if tracker_name == root:
            name = ""
        elif tracker_name.startswith(root + "."):
            name = tracker_name[len(root) + 1 :]
        else:  # "Global" (the grand total) or a module outside this model
            continue
        totals[name] = sum(ops.values())
    result: dict[str, int] = {}
    for name, module in model.named_modules():
        if name not in totals:
            continue
        prefix = f"{name}." if name else ""
        children = sum(totals.get(prefix + child, 0) for child, _ in module.named_children())
        own = (totals[name] - children) // 2
        if own > 0:
            result[name] = own
    return result
