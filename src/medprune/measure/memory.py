"""Peak memory of one inference pass.

Both devices report the same quantity: the bytes of the model's parameters and buffers, plus the
inputs, plus the peak of the tensors allocated during the forward pass (activations and outputs)
that are alive at the same time.

- CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the pass, plus the
  model and input bytes. It includes kernel workspaces (cuDNN) and the caching allocator's
  rounding of each block.
- CPU: there is no allocator counter, so a ``TorchDispatchMode`` watches every aten op: each output
  storage not seen before is recorded with a weak reference, and the sum of the storages still
  alive is taken after every op. Views and in-place results share storage and are counted once;
  storages are freed when their last tensor dies, exactly as in eager execution. Operator-internal
  scratch buffers (e.g. an im2col buffer inside a convolution) and allocator overhead are not seen,
  so the CPU number is a slight underestimate of the process's resident growth.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from medprune.measure._inputs import (
    as_input_tuple,
    eval_mode,
    forward_checked,
    place,
    repeat_batch,
)
from medprune.typing import ExampleInputs


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class _LiveTensorTracker(TorchDispatchMode):
    """Tracks the bytes of storages created by aten ops that are still alive."""

    def __init__(self, baseline: set[tuple[int, int]]) -> None:
        super().__init__()
        self._baseline = baseline
        self._live: dict[tuple[int, int], StorageWeakRef] = {}
        self.live_bytes = 0
        self.peak_bytes = 0

    def _drop_expired(self) -> None:
        dead = [k for k, ref in self._live.items() if ref.expired()]
        for k in dead:
            del self._live[k]
            self.live_bytes -= k[1]

    def __torch_dispatch__(  # noqa: D105
        self, func: Any, types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        self._drop_expired()
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            key = _storage_key(t)
            if key[1] == 0 or key in self._baseline:
                continue
            ref = self._live.get(key)
            if ref is not None and not ref.expired():
                continue  # a view or an in-place result of a live storage
            self._live[key] = StorageWeakRef(t.untyped_storage())
            self.live_bytes += key[1]
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        return out


def _state_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, set]:
    keys: set[tuple[int, int]] = set()
    for t in (*model.parameters(), *model.buffers(), *inputs):
        keys.add(_storage_key(t))
    return sum(k[1] for k in keys), keys


def peak_memory(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> int:
    """Peak bytes of one inference pass: parameters + buffers + inputs + live activations.

    Args:
        model: the network (a copy is moved to ``device`` if it lives elsewhere).
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors.
        device: ``"cpu"`` (dispatch-mode accounting, see the module docstring) or ``"cuda[:N]"``
            (``torch.cuda.max_memory_allocated``).
        batch_size: repeat the examples along dim 0 to this many rows; None keeps ``B``.

    Returns:
        Peak bytes. Activation memory grows with the batch size; the model's share does not.

    Raises:
        ShapeMismatchError: the model rejects inputs of this shape.
    """
    inputs = repeat_batch(as_input_tuple(example_inputs), batch_size)
    model, inputs = place(model, inputs, device)
    state_bytes, baseline = _state_bytes(model, inputs)
    dev = inputs[0].device
    with eval_mode(model), torch.inference_mode():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            before = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            out = forward_checked(model, inputs)
            torch.cuda.synchronize(dev)
            transient = torch.cuda.max_memory_allocated(dev) - before
            del out
            return state_bytes + transient
        tracker = _LiveTensorTracker(baseline)
        with tracker:
            out = forward_checked(model, inputs)
        del out
        return state_bytes + tracker.peak_bytes
