"""Data loaders whose order depends only on ``(seed, epoch)``, single process or sharded.

Shuffling draws from a generator seeded from ``(seed, epoch)`` rather than from the global RNG, so
epoch ``e`` sees the same batches whether the run started at epoch 0 or resumed from a checkpoint.
:func:`medprune.tasks.train` calls ``loader.sampler.set_epoch(epoch)`` before each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

import medprune.tasks.distributed as ddp
from medprune.errors import ConfigError

__all__ = [
    "EpochSeededSampler",
    "ShardedSampler",
    "distribute_loader",
    "epoch_seed",
    "make_loader",
    "shard_for_evaluation",
]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed that mixes ``seed`` and ``epoch`` (distinct for distinct pairs)."""
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)


class EpochSeededSampler(Sampler[int]):
    """Indices ``0..n-1``, shuffled by a generator seeded from ``(seed, epoch)`` when ``shuffle``.

    Call :meth:`set_epoch` before each epoch (``train`` does); without it every pass has the
    epoch-0 order.

    Args:
        data_source: a sized dataset, or its length.
        shuffle: permute the indices (False = sequential order).
        seed: base seed.
    """

    def __init__(self, data_source: Sized | int, *, shuffle: bool = True, seed: int = 0) -> None:
        self.n = data_source if isinstance(data_source, int) else len(data_source)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ShardedSampler(Sampler[int]):
    """Rank ``r``'s share of another sampler's indices: positions ``r, r + W, r + 2W, ...``.

    The base order is padded by repeating its start so every rank gets the same number of indices
    (DistributedDataParallel needs equal step counts). ``set_epoch`` is forwarded to the base.

    Args:
        base: any sampler (e.g. a class-balanced sampler) that yields the same order on every rank.
        rank: this rank (default: the current process's).
        world_size: number of ranks (default: the current world size).
        pad: repeat indices so every rank has ``ceil(len / W)``; False = plain slicing.
    """

    def __init__(
        self, base: Any, *, rank: int | None = None, world_size: int | None = None, pad: bool = True
    ) -> None:
        self.base = base
        self.rank = ddp.rank() if rank is None else rank
        self.world_size = ddp.world_size() if world_size is None else world_size
        self.pad = pad

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(self.base)
        if self.pad and indices and len(indices) % self.world_size:
            extra = self.world_size - len(indices) % self.world_size
            indices += (indices * (extra // len(indices) + 1))[:extra]
        return iter(indices[self.rank :: self.world_size])

    def __len__(self) -> int:
        n = len(self.base)
        if self.pad:
            return -(-n // self.world_size)
        return len(range(self.rank, n, self.world_size))


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    sampler: Sampler[int] | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader[Any]:
    """A DataLoader whose order depends only on ``(seed, epoch)``.

    Single process: an :class:`EpochSeededSampler` (or ``sampler`` as given). Under ``torchrun``:
    a :class:`~torch.utils.data.DistributedSampler` seeded with ``seed`` (or ``sampler`` wrapped
    in a :class:`ShardedSampler`), so each rank sees its own shard.

    Args:
        dataset: a map-style dataset of ``(inputs, targets)`` items.
        batch_size: samples per batch (per rank under ``torchrun``).
        shuffle: shuffle each epoch (ignored when ``sampler`` is given).
        seed: shuffling seed.
        sampler: a custom sampler, e.g. ``medprune.data.ClassBalancedSampler``.
        num_workers: worker processes.
        drop_last: drop the last incomplete batch.
        pin_memory: pin host memory (for CUDA).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
    if sampler is None:
        if ddp.is_distributed():
            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        else:
            sampler = EpochSeededSampler(len(dataset), shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
    elif ddp.is_distributed():
        sampler = ShardedSampler(sampler)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def _rebuild(loader: DataLoader[Any], sampler: Sampler[int]) -> DataLoader[Any]:
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
    )


def _is_rebuildable(loader: Any) -> bool:
    return (
        isinstance(loader, DataLoader)
        and loader.batch_size is not None
        and isinstance(loader.dataset, Sized)
        and not isinstance(loader.dataset, torch.utils.data.IterableDataset)
    )


def distribute_loader(loader: Any, *, seed: int) -> Any:
    """Under ``torchrun``, ``loader`` with its sampler sharded across ranks (else ``loader``).

    Already-sharded loaders (DistributedSampler / ShardedSampler) are returned unchanged. Random
    and epoch-seeded samplers become a shuffling ``DistributedSampler`` (seeded with the
    epoch-seeded sampler's own seed, else ``seed``), sequential
    ones a non-shuffling one, and any other sampler is wrapped in a :class:`ShardedSampler`.
    Loaders that cannot be rebuilt (iterables, custom batch samplers) are returned unchanged.
    """
    if not ddp.is_distributed() or not _is_rebuildable(loader):
        return loader
    sampler = loader.sampler
    if isinstance(sampler, (DistributedSampler, ShardedSampler)):
        return loader
    if isinstance(sampler, (torch.utils.data.RandomSampler, EpochSeededSampler)):
        shuffle = not isinstance(sampler, EpochSeededSampler) or sampler.shuffle
        seed = sampler.seed if isinstance(sampler, EpochSeededSampler) else seed
        new: Sampler[int] = DistributedSampler(loader.dataset, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
    elif isinstance(sampler, torch.utils.data.SequentialSampler):
        new = DistributedSampler(loader.dataset, shuffle=False)  # type: ignore[arg-type]
    else:
        new = ShardedSampler(sampler)
    return _rebuild(loader, new)


def shard_for_evaluation(loader: Any) -> Any | None:
    """Under ``torchrun``, this rank's disjoint, unpadded share of ``loader`` (else None).

    Every sample is evaluated exactly once across ranks; the caller gathers the results.
    """
    if not ddp.is_distributed() or not _is_rebuildable(loader):
        return None
    base = torch.utils.data.SequentialSampler(loader.dataset)  # type: ignore[arg-type]
    return _rebuild(loader, ShardedSampler(base, pad=False))
