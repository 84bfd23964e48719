"""Image + mask folders for 2D segmentation (the Kvasir-SEG layout).

::

    root/
      images/<id>.jpg     RGB images, any size
      masks/<id>.jpg      same name; grey or RGB, foreground bright (thresholded at 128)
      train.txt, val.txt  optional split lists: one id per line, with or without the extension
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medprune.data._imageio import index_folder, read_image, strip_image_suffix
from medprune.data.arrays import parse_image_size
from medprune.errors import ConfigError, DataError
from medprune.typing import PathLike

MASK_THRESHOLD = 128


def read_split_file(path: Path) -> list[str]:
    """Ids listed in a split file: one per line, blank lines and ``#`` comments skipped.

    Raises:
        DataError: the file is missing or lists an id twice.
    """
    if not path.is_file():
        raise DataError(
            f"split file not found: {path}. Create it (one image id per line) or pass split=None "
            "to use every image in the folder."
        )
    ids: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        image_id = strip_image_suffix(Path(entry).name)
        if image_id in seen:
            raise DataError(f"{path}, line {number}: id {image_id!r} is listed twice.")
        seen.add(image_id)
        ids.append(image_id)
    return ids


KVASIR_MARKER = "kavsir_bboxes.json"  # the official Kvasir-SEG box file (its own spelling)


def default_class_names(root: Path, class_names: Sequence[str] | None) -> tuple[str, ...]:
    """``class_names`` checked (two names), or the folder's default (see SegmentationFolder)."""
    if class_names is None:
        is_kvasir = (root / KVASIR_MARKER).is_file()
        return ("background", "polyp") if is_kvasir else ("background", "foreground")
    names = tuple(str(n) for n in class_names)
    if len(names) != 2:
        raise ConfigError(
            f"class_names of a segmentation folder must be two names (background, foreground); "
            f"got {list(class_names)!r}."
        )
    return names


class SegmentationFolder(Dataset):
    """Image + mask pairs from ``root/images`` and ``root/masks`` (binary masks).

    Files are decoded on first access, resized (bilinear for images, nearest for masks) and kept
    in memory as ``uint8``, so later epochs do no I/O.

    Args:
        root: the dataset folder.
        split: ``None`` for every image in ``images/``, or the name of a split list
            ``root/<split>.txt`` (e.g. ``"train"``, ``"val"``).
        image_size: ``(H, W)`` (or one int) every pair is resized to.
        ids: explicit image ids (overrides ``split``).
        cache: keep decoded arrays in memory.
        class_names: ``(background name, foreground name)``; ``None`` gives
            ``("background", "polyp")`` for a Kvasir-SEG folder (it holds the official
            ``kavsir_bboxes.json``), else ``("background", "foreground")``.

    Items are ``(image float32 (3, H, W) in [0, 1], mask int64 (H, W) in {0, 1})``.

    Raises:
        DataError: a folder or split file is missing, an image has no mask, or an id is unknown.
    """

    num_classes = 2
    in_channels = 3
    spatial_dims = 2
    task = "segmentation"
    labels = None

    def __init__(
        self,
        root: PathLike,
        *,
        split: str | None = None,
        image_size: int | Sequence[int] = (256, 256),
        ids: Sequence[str] | None = None,
        cache: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.class_names: tuple[str, ...] = default_class_names(self.root, class_names)
        self.image_size: tuple[int, ...] = parse_image_size(image_size, 2)
        self.cache = cache
        if not self.root.is_dir():
            raise DataError(
                f"segmentation folder not found: {self.root}. Expected a folder holding images/ "
                "and masks/ (the Kvasir-SEG layout)."
            )
        image_files = self._index("images")
        mask_files = self._index("masks")
        if ids is not None:
            chosen = [strip_image_suffix(str(i)) for i in ids]
        elif split is not None:
            if not isinstance(split, str) or not split:
                raise ConfigError(
                    f"split must be a split-file name such as 'train'; got {split!r}."
                )
            chosen = read_split_file(self.root / f"{split}.txt")
        else:
            chosen = sorted(image_files)
        if not chosen:
            raise DataError(f"no images selected in {self.root} (split={split!r}, ids={ids!r}).")
        unknown = [i for i in chosen if i not in image_files]
        if unknown:
            raise DataError(
                f"{len(unknown)} id(s) have no image in {self.root / 'images'}, e.g. "
                f"{', '.join(map(repr, unknown[:3]))}; fix the split list or add the images."
            )
        no_mask = [i for i in chosen if i not in mask_files]
        if no_mask:
            raise DataError(
                f"image {image_files[no_mask[0]].name} (id {no_mask[0]!r}) has no mask in "
                f"{self.root / 'masks'}"
                + (f" ({len(no_mask)} ids lack masks)" if len(no_mask) > 1 else "")
                + "; add the mask or remove the id from the split."
            )
        self.ids: list[str] = chosen
        self.image_paths = [image_files[i] for i in chosen]
        self.mask_paths = [mask_files[i] for i in chosen]
        self._cache: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(chosen)

    def _index(self, name: str) -> dict[str, Path]:
        folder = self.root / name
        if not folder.is_dir():
            raise DataError(
                f"folder {folder} not found; a segmentation folder holds images/<id>.jpg and "
                "masks/<id>.jpg."
            )
        files = index_folder(folder)
        if not files:
            raise DataError(f"{folder} holds no image files (.jpg, .png, ...).")
        return files

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache[index]
        if cached is not None:
            return cached
        image, image_wh = read_image(
            self.image_paths[index], mode="RGB", size=self.image_size, resample=Image.BILINEAR
        )
        mask, mask_wh = read_image(
            self.mask_paths[index], mode="L", size=self.image_size, resample=Image.NEAREST
        )
        if image_wh != mask_wh:
            raise DataError(
                f"id {self.ids[index]!r}: image {self.image_paths[index].name} is {image_wh[0]}x"
                f"{image_wh[1]} but its mask is {mask_wh[0]}x{mask_wh[1]}; they must match."
            )
        pair = (
            np.ascontiguousarray(image.transpose(2, 0, 1)),  # (3, H, W) uint8
            (mask >= MASK_THRESHOLD).astype(np.uint8),  # (H, W) in {0, 1}
        )
        if self.cache:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._load(index)
        return (
            torch.from_numpy(image).float().div_(255.0),
            torch.from_numpy(mask).to(torch.int64),
        )

    def preload(self) -> SegmentationFolder:
        """Decode every pair now (fills the cache); returns ``self``."""
        for index in range(len(self)):
            self._load(index)
        return self

    def class_counts(self) -> torch.Tensor:
        """int64 ``(2,)``: background and foreground pixels over the dataset (decodes every pair)."""
        counts = torch.zeros(2, dtype=torch.int64)
        for index in range(len(self)):
            mask = self._load(index)[1]
            fg = int(mask.sum())
            counts += torch.tensor([mask.size - fg, fg])
        return counts

    def __repr__(self) -> str:
        return f"SegmentationFolder(root={str(self.root)!r}, n={len(self)}, image_size={self.image_size})"
