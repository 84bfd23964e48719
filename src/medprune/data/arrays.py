"""In-memory array datasets and the MedMNIST ``.npz`` reader.

:class:`ArrayDataset` holds a whole dataset as tensors: images ``(N, C, *S)`` (``uint8`` in 0..255
or float in [0, 1]) and targets, either class labels ``(N,)`` (classification) or class-index masks
``(N, *S)`` (segmentation). Items are ``(image float32 (C, *S) in [0, 1], target int64)``.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medprune.data.medmnist_labels import medmnist_class_names
from medprune.errors import ConfigError, DataError
from medprune.typing import PathLike

logger = logging.getLogger(__name__)

MEDMNIST_SPLITS = ("train", "val", "test")


class ArrayDataset(Dataset):
    """A dataset held in memory as tensors.

    Args:
        images: ``(N, C, *S)`` with ``S`` = ``(H, W)`` or ``(D, H, W)``; ``uint8`` (scaled by 1/255
            on access) or floating point already in [0, 1].
        targets: class labels ``(N,)`` for classification, or class-index masks ``(N, *S)`` for
            segmentation; any integer dtype.
        num_classes: number of classes (segmentation: including background).
        class_names: one name per class; defaults to ``"0"``, ``"1"``, ...

    Attributes:
        labels: int64 ``(N,)`` for classification; ``None`` for segmentation.
        task: ``"classification"`` or ``"segmentation"``.
        in_channels: ``C``. spatial_dims: ``len(S)``. image_size: ``S``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        num_classes: int,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if images.ndim not in (4, 5):
            raise DataError(
                f"images must have shape (N, C, H, W) or (N, C, D, H, W); got {tuple(images.shape)}."
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise DataError(f"images must be uint8 or floating point; got dtype {images.dtype}.")
        if targets.shape[0] != images.shape[0]:
            raise DataError(
                f"images and targets differ in length: {images.shape[0]} images, "
                f"{targets.shape[0]} targets."
            )
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise DataError(f"targets must be integer class indices; got dtype {targets.dtype}.")
        seg = targets.ndim > 1
        if seg and tuple(targets.shape[1:]) != tuple(images.shape[2:]):
            raise DataError(
                f"masks have spatial shape {tuple(targets.shape[1:])} but images have "
                f"{tuple(images.shape[2:])}; they must match."
            )
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1; got {num_classes!r}.")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
            raise DataError(
                f"targets must lie in [0, {num_classes - 1}] for num_classes={num_classes}; "
                f"got values in [{int(targets.min())}, {int(targets.max())}]."
            )
        names = tuple(class_names) if class_names is not None else _default_names(num_classes)
        if len(names) != num_classes:
            raise ConfigError(
                f"class_names has {len(names)} entries but num_classes is {num_classes}."
            )
        self.images = images
        self.targets = targets if seg else targets.to(torch.int64)
        self.num_classes = num_classes
        self.class_names: tuple[str, ...] = names
        self.task = "segmentation" if seg else "classification"
        self.in_channels = int(images.shape[1])
        self.spatial_dims = images.ndim - 2
        self.image_size: tuple[int, ...] = tuple(int(s) for s in images.shape[2:])

    @property
    def labels(self) -> torch.Tensor | None:
        """Class labels int64 ``(N,)`` (classification) or ``None`` (segmentation)."""
        return self.targets if self.task == "classification" else None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        image = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
        return image, self.targets[index].to(torch.int64)

    def class_counts(self) -> torch.Tensor:
        """int64 ``(num_classes,)``: images per class, or pixels per class for segmentation."""
        return torch.bincount(self.targets.flatten().long(), minlength=self.num_classes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, task={self.task}, "
            f"in_channels={self.in_channels}, image_size={self.image_size}, "
            f"num_classes={self.num_classes})"
        )


def _default_names(num_classes: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(num_classes))


def resize_images(images: torch.Tensor, size: Sequence[int], *, chunk: int = 512) -> torch.Tensor:
    """Resize a stack of images with bilinear (2D) or trilinear (3D) interpolation.

    Args:
        images: ``(N, C, *S)``, ``uint8`` or float.
        size: the new ``S``.
        chunk: images resized at a time (bounds the float working memory).

    Returns:
        ``(N, C, *size)`` of the input dtype (``uint8`` results are rounded).
    """
    size = tuple(int(s) for s in size)
    if tuple(images.shape[2:]) == size:
        return images
    mode = "bilinear" if images.ndim == 4 else "trilinear"
    out = []
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        part = F.interpolate(part, size=size, mode=mode, align_corners=False, antialias=False)
        if images.dtype == torch.uint8:
            part = part.round_().clamp_(0, 255).to(torch.uint8)
        out.append(part)
    if not out:
        return images.new_zeros((0, images.shape[1], *size))
    return torch.cat(out)


def parse_image_size(image_size: int | Sequence[int] | None, spatial_dims: int) -> tuple[int, ...]:
    """Normalise ``image_size`` (an int or a sequence of ``spatial_dims`` ints) to a tuple."""
    if isinstance(image_size, bool) or image_size is None:
        raise ConfigError(
            f"image_size must be a positive int or a list of ints; got {image_size!r}."
        )
    if isinstance(image_size, int):
        size = (image_size,) * spatial_dims
    else:
        size = tuple(image_size)
    if len(size) != spatial_dims or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ConfigError(
            f"image_size must be a positive int or {spatial_dims} positive ints; got {image_size!r}."
        )
    return size


def load_medmnist(
    path: PathLike,
    split: str,
    *,
    image_size: int | Sequence[int] | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> ArrayDataset:
    """Read one split of a MedMNIST ``.npz`` file (any 2D set, any size; 3D sets too).

    The file holds ``{split}_images`` (``(N, H, W)`` grey, ``(N, H, W, 3)`` RGB, or ``(N, D, H, W)``
    for the 3D sets; ``uint8``) and ``{split}_labels`` (``(N, 1)`` or ``(N,)``, integer) for
    ``split`` in ``train``, ``val``, ``test``. Loaded with ``allow_pickle=False``.

    Args:
        path: the ``.npz`` file, e.g. ``pneumoniamnist.npz``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: resize to this size (int or ``(H, W)``) with bilinear interpolation; ``None``
            keeps the stored size.
        num_classes: number of classes; ``None`` infers ``max label + 1`` over every split in the
            file (so a split that lacks a class still reports the full count).
        class_names: names, one per class; ``None`` takes the official MedMNIST names when the
            file name is a MedMNIST set (``pneumoniamnist.npz`` -> ``normal``, ``pneumonia``;
            see :mod:`medprune.data.medmnist_labels`), else ``"0"``, ``"1"``, ...

    Returns:
        An :class:`ArrayDataset` with items ``(image float32 (C, H, W) in [0, 1], label int64)``.

    Raises:
        DataError: the file is missing, not an ``.npz``, corrupt, lacks the split's keys, or holds
            inconsistent / non-integer / out-of-range labels.
        ConfigError: ``split`` or ``image_size`` is invalid.
    """
    if split not in MEDMNIST_SPLITS:
        raise ConfigError(f"split must be one of {', '.join(MEDMNIST_SPLITS)}; got {split!r}.")
    path = Path(path)
    archive = _open_npz(path)
    try:
        images = _read_key(archive, path, f"{split}_images")
        labels = _read_key(archive, path, f"{split}_labels")
        other_max = [
            _label_max(_read_key(archive, path, f"{s}_labels"))
            for s in MEDMNIST_SPLITS
            if s != split and f"{s}_labels" in archive.files
        ]
    finally:
        archive.close()
    images_t = _images_to_tensor(images, path, split)
    labels_t = _labels_to_tensor(labels, path, split, n_images=images_t.shape[0])
    if num_classes is None:
        num_classes = max([_label_max(labels), *other_max, 0]) + 1
    elif labels_t.numel() and int(labels_t.max()) >= num_classes:
        raise DataError(
            f"{path}: {split}_labels go up to {int(labels_t.max())} but num_classes={num_classes}; "
            "labels must lie in [0, num_classes - 1] (pass the right num_classes or fix the file)."
        )
    if image_size is not None:
        images_t = resize_images(images_t, parse_image_size(image_size, images_t.ndim - 2))
    if class_names is None:
        class_names = medmnist_class_names(path, num_classes)
    logger.debug("loaded %s split %s: images %s", path, split, tuple(images_t.shape))
    return ArrayDataset(images_t, labels_t, num_classes=num_classes, class_names=class_names)


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        hint = " (it is a folder; give the .npz file inside it)" if path.is_dir() else ""
        raise DataError(
            f"MedMNIST file not found: {path}{hint}. Give the path of a MedMNIST .npz file, "
            "e.g. .../pneumoniamnist.npz (paths may use $MEDPRUNE_DATA)."
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(
            f"{path} is a corrupt or truncated .npz archive ({e}); download the file again."
        ) from e
    except (ValueError, OSError) as e:
        raise DataError(
            f"{path} is not a readable .npz archive ({e}); give a MedMNIST .npz file."
        ) from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array, not an .npz archive with train/val/test keys; "
            "give a MedMNIST .npz file."
        )
    return archive


def _read_key(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    if key not in archive.files:
        raise DataError(
            f"{path} has no key {key!r}; keys found: {', '.join(sorted(archive.files)) or 'none'}. "
            "A MedMNIST file holds train_images, train_labels, val_images, val_labels, "
            "test_images, test_labels."
        )
    try:
        return np.asarray(archive[key])
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
        raise DataError(f"{path}: array {key!r} is corrupt ({e}); download the file again.") from e


def _images_to_tensor(images: np.ndarray, path: Path, split: str) -> torch.Tensor:
    """``(N, H, W)``, ``(N, H, W, C<=4)`` or ``(N, D, H, W)`` -> ``(N, C, *S)``."""
    key = f"{split}_images"
    if images.ndim == 3:
        images = images[:, None]  # (N, 1, H, W)
    elif images.ndim == 4 and images.shape[-1] <= 4:
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # (N, C, H, W)
    elif images.ndim == 4:
        images = images[:, None]  # 3D volumes (N, 1, D, H, W)
    else:
        raise DataError(
            f"{path}: {key} has shape {images.shape}; expected (N, H, W), (N, H, W, C) "
            "or (N, D, H, W)."
        )
    if images.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(images))
    if np.issubdtype(images.dtype, np.floating):
        lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{path}: float {key} must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
                "Store uint8 images (0..255) or scale them to [0, 1]."
            )
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if images.dtype == np.uint16:
        return torch.from_numpy(images.astype(np.float32) / 65535.0)
    raise DataError(f"{path}: {key} has dtype {images.dtype}; expected uint8 or float in [0, 1].")


def _labels_to_tensor(labels: np.ndarray, path: Path, split: str, *, n_images: int) -> torch.Tensor:
    key = f"{split}_labels"
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{path}: {key} has shape {labels.shape}; expected (N, 1) or (N,) single-label "
            "classes (multi-label sets such as ChestMNIST are not supported)."
        )
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise DataError(
            f"{path}: {key} has dtype {labels.dtype}; labels must be integer class indices."
        )
    if labels.shape[0] != n_images:
        raise DataError(
            f"{path}: {split}_images holds {n_images} images but {key} holds "
            f"{labels.shape[0]} labels; they must have the same length."
        )
    if labels.size and int(labels.min()) < 0:
        raise DataError(
            f"{path}: {key} contains {int(labels.min())}; labels must be class indices >= 0."
        )
    return torch.from_numpy(labels.astype(np.int64))


def _label_max(labels: np.ndarray) -> int:
    if labels.size == 0 or not (
        np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_
    ):
        return 0
    return int(labels.max())
