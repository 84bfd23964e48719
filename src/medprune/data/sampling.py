"""Class-balanced sampling and calibration subsets.

A pruning criterion scored on a calibration set drawn from an imbalanced dataset sees the rare
class a handful of times; drawing the calibration images class-balanced is the cheapest protection.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from medprune.errors import ConfigError, DataError


def labels_of(dataset: Dataset) -> torch.Tensor | None:
    """The class labels int64 ``(N,)`` of a dataset, or ``None`` when it has none (segmentation).

    Looks for a ``.labels`` attribute and sees through (nested) :class:`~torch.utils.data.Subset`.
    """
    if isinstance(dataset, Subset):
        parent = labels_of(dataset.dataset)
        if parent is None:
            return None
        return parent[torch.as_tensor(list(dataset.indices), dtype=torch.int64)]
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    return _as_label_tensor(labels)


def _as_label_tensor(labels: object) -> torch.Tensor:
    if isinstance(labels, Dataset):
        found = labels_of(labels)
        if found is None:
            raise DataError(
                f"{type(labels).__name__} has no class labels (.labels); a class-balanced sampler "
                "needs a classification dataset."
            )
        return found
    tensor = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if tensor.ndim != 1:
        raise DataError(f"labels must be 1-D (N,); got shape {tuple(tensor.shape)}.")
    if tensor.numel() == 0:
        return tensor.to(torch.int64)
    if tensor.is_floating_point() or tensor.is_complex():
        raise DataError(f"labels must be integer class indices; got dtype {tensor.dtype}.")
    tensor = tensor.to(torch.int64)
    if tensor.numel() and int(tensor.min()) < 0:
        raise DataError(f"labels must be >= 0; got {int(tensor.min())}.")
    return tensor


class ClassBalancedSampler(Sampler[int]):
    """Draws indices with replacement so that every present class is equally likely.

    Each index has weight ``1 / count(its class)``. Every ``iter()`` draws a fresh, seeded epoch:
    epoch ``e`` uses the seed ``seed + e``; the epoch advances after each pass or can be set with
    :meth:`set_epoch` (for resuming).

    Args:
        labels: class labels ``(N,)`` (tensor, array, list) or a dataset with ``.labels``.
        num_samples: indices per epoch (default ``N``).
        seed: random seed.
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int] | np.ndarray | Dataset,
        num_samples: int | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.labels = _as_label_tensor(labels)
        if self.labels.numel() == 0:
            raise DataError("ClassBalancedSampler needs at least one label; got an empty list.")
        if num_samples is None:
            num_samples = int(self.labels.numel())
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ConfigError(f"num_samples must be an integer >= 1; got {num_samples!r}.")
        self.num_samples = num_samples
        self.seed = int(seed)
        self.epoch = 0
        counts = torch.bincount(self.labels)
        self.weights = 1.0 / counts[self.labels].double()  # (N,)

    def set_epoch(self, epoch: int) -> None:
        """Use the draw of ``epoch`` on the next ``iter()``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        draw = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=gen)
        return iter(draw.tolist())

    def __len__(self) -> int:
        return self.num_samples


class LabeledSubset(Subset):
    """A :class:`~torch.utils.data.Subset` that keeps the dataset's attributes.

    ``.labels`` is the parent's labels at ``indices`` (``None`` for segmentation);
    ``num_classes``, ``in_channels``, ``class_names``, ``task``, ``spatial_dims``, ``image_size``
    and any other attribute are read from the parent dataset.
    """

    @property
    def labels(self) -> torch.Tensor | None:
        return labels_of(self)

    def class_counts(self) -> torch.Tensor:
        """int64 ``(num_classes,)``: images per class in this subset (classification only)."""
        labels = self.labels
        if labels is None:
            raise DataError("class_counts() of a subset needs class labels (classification data).")
        return torch.bincount(labels, minlength=int(self.num_classes))

    def __getattr__(self, name: str) -> object:
        if name in ("dataset", "indices") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _check_n(n: object, dataset_len: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be an integer >= 1; got {n!r}.")
    if dataset_len == 0:
        raise DataError("cannot draw a subset of an empty dataset.")
    if n > dataset_len:
        warnings.warn(
            f"asked for {n} images but the dataset holds {dataset_len}; using all of them.",
            stacklevel=3,
        )
        n = dataset_len
    return n


def _balanced_quota(counts: list[int], n: int) -> list[int]:
    """Split ``n`` as evenly as possible over classes, capped by each class's count."""
    quota = [0] * len(counts)
    remaining = n
    open_classes = [k for k, c in enumerate(counts) if c > 0]
    while remaining > 0 and open_classes:
        share, extra = divmod(remaining, len(open_classes))
        for rank, k in enumerate(open_classes):
            quota[k] += min(share + (1 if rank < extra else 0), counts[k] - quota[k])
        remaining = n - sum(quota)
        open_classes = [k for k in open_classes if quota[k] < counts[k]]
    return quota


def balanced_subset(dataset: Dataset, n: int, *, seed: int = 0) -> LabeledSubset:
    """``n`` images drawn without replacement, as equal per class as the data allows.

    Classes with fewer images than their share give all of them and the rest is spread over the
    other classes. For datasets without labels (segmentation) this is a seeded random subset. The
    chosen indices are shuffled, so batches mix classes.

    Args:
        dataset: a dataset with ``.labels`` (or a ``Subset`` of one), or any sized dataset.
        n: number of images (capped at ``len(dataset)`` with a warning).
        seed: random seed.

    Returns:
        A :class:`LabeledSubset` (a ``Subset`` that keeps ``.labels``, ``.num_classes``, ...).
    """
    n = _check_n(n, len(dataset))  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(int(seed))
    labels = labels_of(dataset)
    if labels is None:
        chosen = torch.randperm(len(dataset), generator=gen)[:n]  # type: ignore[arg-type]
        return LabeledSubset(dataset, chosen.tolist())
    counts = torch.bincount(labels).tolist()
    quota = _balanced_quota(counts, n)
    picked = []
    for k, q in enumerate(quota):
        if q:
            members = torch.nonzero(labels == k).flatten()
            picked.append(members[torch.randperm(members.numel(), generator=gen)[:q]])
    chosen = torch.cat(picked)
    chosen = chosen[torch.randperm(chosen.numel(), generator=gen)]
    return LabeledSubset(dataset, chosen.tolist())


def random_subset(dataset: Dataset, n: int, *, seed: int = 0) -> LabeledSubset:
    """``n`` images drawn uniformly without replacement (seeded)."""
    n = _check_n(n, len(dataset))  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(int(seed))
    chosen = torch.randperm(len(dataset), generator=gen)[:n]  # type: ignore[arg-type]
    return LabeledSubset(dataset, chosen.tolist())


def calibration_loader(
    dataset: Dataset,
    n_images: int,
    *,
    batch_size: int = 16,
    balanced: bool = True,
    seed: int = 0,
) -> DataLoader:
    """A fixed, seeded loader of ``n_images`` calibration images for pruning criteria.

    Args:
        dataset: the dataset to draw from (usually the training set).
        n_images: how many images (capped at ``len(dataset)`` with a warning).
        batch_size: batch size of the loader.
        balanced: draw class-balanced (:func:`balanced_subset`) instead of uniformly.
        seed: random seed.

    Returns:
        A :class:`~torch.utils.data.DataLoader` without shuffling (same batches every pass), whose
        batches are ``(inputs (B, C, *S), targets)``.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
    subset = (balanced_subset if balanced else random_subset)(dataset, n_images, seed=seed)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0)


def proportional_take(
    labels: torch.Tensor | None, n_total: int, n_take: int, gen: torch.Generator
) -> torch.Tensor:
    """Indices of ``n_take`` items, stratified by ``labels`` when given (largest remainder)."""
    if labels is None:
        return torch.randperm(n_total, generator=gen)[:n_take]
    counts = torch.bincount(labels).double()
    exact = counts * n_take / max(1, n_total)
    take = exact.floor().long()
    order = torch.argsort(exact - take, descending=True, stable=True)
    for k in order[: n_take - int(take.sum())]:
        take[k] += 1
    picked = []
    for k, q in enumerate(take.tolist()):
        members = torch.nonzero(labels == k).flatten()
        picked.append(members[torch.randperm(members.numel(), generator=gen)[:q]])
    return torch.sort(torch.cat(picked)).values if picked else torch.zeros(0, dtype=torch.int64)


def split_indices(
    dataset_len: int, labels: torch.Tensor | None, fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Seeded split of ``range(dataset_len)`` into ``len(fractions) + 1`` index lists.

    Part ``i + 1`` holds ``round(fractions[i] * dataset_len)`` items, stratified by ``labels`` when
    given; part 0 (the training part) holds the rest.
    """
    gen = torch.Generator().manual_seed(seed)
    remaining = torch.arange(dataset_len)
    parts = []
    for fraction in fractions:
        n_take = round(fraction * dataset_len)
        sub_labels = labels[remaining] if labels is not None else None
        chosen = proportional_take(sub_labels, remaining.numel(), n_take, gen)
        keep = torch.ones(remaining.numel(), dtype=torch.bool)
        keep[chosen] = False
        parts.append(remaining[chosen].tolist())
        remaining = remaining[keep]
    if remaining.numel() == 0:
        raise ConfigError(
            f"the fractions {list(fractions)} leave no training data out of {dataset_len} items; "
            "lower val_fraction / test_fraction."
        )
    return [remaining.tolist(), *parts]


def subsample(dataset: Dataset, n_max: int | None, seed: int) -> Dataset:
    """At most ``n_max`` items of ``dataset`` (stratified, seeded); the dataset itself if smaller."""
    if n_max is None or n_max >= len(dataset):  # type: ignore[arg-type]
        return dataset
    gen = torch.Generator().manual_seed(seed)
    chosen = proportional_take(labels_of(dataset), len(dataset), n_max, gen)  # type: ignore[arg-type]
    return LabeledSubset(dataset, chosen.tolist())
