"""Multi-process training helpers (``torchrun`` + DistributedDataParallel).

When a script is launched by ``torchrun`` (``python -m torch.distributed.run --nproc_per_node=N``),
the environment holds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``. :func:`medprune.tasks.train`
then calls :func:`init_distributed` (``gloo`` on CPU, ``nccl`` on CUDA), wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel` and shards the data. Pruning methods use
:func:`broadcast_object` and :func:`all_reduce_mean` so that every rank takes identical decisions
(rank 0 decides, the others receive), which keeps the physically pruned replicas identical.

Every helper is a no-op (or the identity) in a single process, so callers need no special case.
"""

from __future__ import annotations

import logging
import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_objects",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launched_distributed",
    "local_rank",
    "rank",
    "sync_buffers",
    "world_size",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def launched_distributed() -> bool:
    """Whether the process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 in a single process; ``$RANK`` before initialisation)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes (1 in a single process; ``$WORLD_SIZE`` before initialisation)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """Rank of the process on its machine (``$LOCAL_RANK``, 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0: the process that writes checkpoints and shows progress."""
    return rank() == 0


def init_distributed(device: str | torch.device = "cpu") -> torch.device:
    """Initialise the default process group when launched by ``torchrun``.

    Uses ``nccl`` when ``device`` is CUDA (and pins this process to ``cuda:$LOCAL_RANK``),
    ``gloo`` otherwise. Does nothing when not launched distributed or already initialised.

    Args:
        device: the device requested by the caller (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).

    Returns:
        The device this process should use.
    """
    device = torch.device(device)
    if device.type == "cuda" and launched_distributed():
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if launched_distributed() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        logger.info(
            "initialised %s process group: rank %d of %d", backend, dist.get_rank(), world_size()
        )
    return device


def cleanup_distributed() -> None:
    """Destroy the default process group if one is initialised.

    All ranks meet at a barrier first: with ``gloo``, a rank that tears its group down while a
    peer is still finishing its last collective can abort the peer ("terminate called without an
    active exception").
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def _backend_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor, same shape, device and dtype as the input).

    Args:
        tensor: any shape; integer tensors are averaged in float64 and cast back.
    """
    if not is_distributed():
        return tensor.clone()
    work = tensor.detach().to(_backend_device(), dtype=torch.float64).clone()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    work /= dist.get_world_size()
    return work.to(tensor.device, dtype=tensor.dtype)


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as held by rank ``src`` on every rank (picklable objects; identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]  # type: ignore[return-value]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, ordered by rank (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_buffers(model: torch.nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) of ``model`` over ranks.

    DistributedDataParallel broadcasts rank 0's buffers at the start of each forward, but the last
    forward of an epoch updates them from each rank's own batch; averaging afterwards makes the
    replicas identical again and uses every rank's statistics. Integer buffers are left alone.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for buf in model.buffers():
            if buf.is_floating_point():
                buf.copy_(all_reduce_mean(buf))
