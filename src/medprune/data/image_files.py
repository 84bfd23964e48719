"""Classification datasets read from image files: class-per-folder trees and ``path,label`` CSVs."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medprune.data._imageio import IMAGE_SUFFIXES, is_image_file, read_image
from medprune.data.arrays import parse_image_size
from medprune.errors import DataError
from medprune.typing import PathLike


class _ImageFileDataset(Dataset):
    """Shared part: a list of files with int labels, decoded lazily and cached as ``uint8``."""

    task = "classification"
    spatial_dims = 2

    def __init__(
        self,
        paths: list[Path],
        labels: list[int],
        class_names: Sequence[str],
        *,
        image_size: int | Sequence[int],
        grayscale: bool,
        cache: bool,
    ) -> None:
        self.paths = paths
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.image_size: tuple[int, ...] = parse_image_size(image_size, 2)
        self.grayscale = bool(grayscale)
        self.in_channels = 1 if self.grayscale else 3
        self.cache = cache
        self._cache: list[np.ndarray | None] = [None] * len(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self._cache[index]
        if image is None:
            array, _ = read_image(
                self.paths[index],
                mode="L" if self.grayscale else "RGB",
                size=self.image_size,
                resample=Image.BILINEAR,
            )
            image = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)
            image = np.ascontiguousarray(image)
            if self.cache:
                self._cache[index] = image
        return torch.from_numpy(image).float().div_(255.0), self.labels[index]

    def class_counts(self) -> torch.Tensor:
        """int64 ``(num_classes,)``: images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={list(self.class_names)}, "
            f"image_size={self.image_size}, in_channels={self.in_channels})"
        )


class ImageFolderDataset(_ImageFileDataset):
    """A class-per-folder image tree: ``root/<class_name>/<image>``.

    Class indices follow the sorted folder names (``.class_names``). Images are decoded on first
    access, converted to RGB (or grey), resized with bilinear interpolation and cached.

    Args:
        root: the folder whose sub-folders are the classes.
        image_size: ``(H, W)`` or one int.
        grayscale: convert to one channel instead of three.
        cache: keep decoded images in memory.

    Items are ``(image float32 (C, H, W) in [0, 1], label int64)``, ``C`` = 1 or 3.

    Raises:
        DataError: ``root`` is missing, has no class folders, or a class folder has no images.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        image_size: int | Sequence[int],
        grayscale: bool = False,
        cache: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"image folder not found: {self.root}. Expected root/<class_name>/<image files>."
            )
        class_dirs = sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not class_dirs:
            raise DataError(
                f"{self.root} has no class sub-folders; expected root/<class_name>/<image files>."
            )
        paths: list[Path] = []
        labels: list[int] = []
        for label, folder in enumerate(class_dirs):
            files = sorted(p for p in folder.rglob("*") if is_image_file(p))
            if not files:
                raise DataError(
                    f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); add "
                    "images or remove the folder."
                )
            paths += files
            labels += [label] * len(files)
        super().__init__(
            paths,
            labels,
            [p.name for p in class_dirs],
            image_size=image_size,
            grayscale=grayscale,
            cache=cache,
        )


class CsvImageDataset(_ImageFileDataset):
    """Images listed in a CSV with a header and the columns ``path`` and ``label`` (ISIC style).

    Labels may be integers (class index = value, ``num_classes`` = max + 1) or strings (mapped to
    indices in sorted order). A path without a suffix is tried with the usual image suffixes.

    Args:
        csv_path: the CSV file.
        image_root: folder the paths are relative to (default: the CSV's folder).
        image_size: ``(H, W)`` or one int.
        grayscale: convert to one channel instead of three.
        path_column: name of the path column.
        label_column: name of the label column.
        class_names: fix the classes (e.g. those of the training CSV, so that a test CSV maps
            labels to the same indices); string labels must be among them, integer labels below
            their count.
        cache: keep decoded images in memory.

    Raises:
        DataError: the CSV is missing, lacks a column, is empty, or names files that do not exist.
    """

    def __init__(
        self,
        csv_path: PathLike,
        *,
        image_root: PathLike | None = None,
        image_size: int | Sequence[int],
        grayscale: bool = False,
        path_column: str = "path",
        label_column: str = "label",
        class_names: Sequence[str] | None = None,
        cache: bool = True,
    ) -> None:
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise DataError(
                f"CSV file not found: {self.csv_path}. Give a CSV with columns path,label."
            )
        self.image_root = Path(image_root) if image_root is not None else self.csv_path.parent
        rows = self._read_rows(path_column, label_column)
        names, labels = self._map_labels([label for _, label in rows], class_names)
        paths = [self._resolve(p, line) for line, (p, _) in enumerate(rows, start=2)]
        super().__init__(
            paths, labels, names, image_size=image_size, grayscale=grayscale, cache=cache
        )

    def _map_labels(
        self, raw: list[str], class_names: Sequence[str] | None
    ) -> tuple[list[str], list[int]]:
        """String or integer labels -> (class names, class indices)."""
        if all(_is_int(v) for v in raw):
            values = [int(v) for v in raw]
            names = list(class_names) if class_names is not None else []
            n_classes = len(names) if class_names is not None else max(values) + 1
            bad = [v for v in values if not 0 <= v < n_classes]
            if bad:
                raise DataError(
                    f"{self.csv_path}: label {bad[0]} is out of range; integer labels must lie "
                    f"in [0, {n_classes - 1}]."
                )
            return names or [str(i) for i in range(n_classes)], values
        names = list(class_names) if class_names is not None else sorted(set(raw))
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(raw) - set(index))
        if unknown:
            raise DataError(
                f"{self.csv_path}: label(s) {', '.join(map(repr, unknown[:5]))} are not among the "
                f"classes {names}; use the same label names in every CSV."
            )
        return names, [index[v] for v in raw]

    def _read_rows(self, path_column: str, label_column: str) -> list[tuple[str, str]]:
        with self.csv_path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in (path_column, label_column) if c not in columns]
            if missing:
                raise DataError(
                    f"{self.csv_path} lacks column(s) {', '.join(missing)}; columns found: "
                    f"{', '.join(columns) or 'none'}. The first line must be a header such as "
                    f"'{path_column},{label_column}' (or pass path_column=/label_column=)."
                )
            rows = []
            for line, row in enumerate(reader, start=2):
                path, label = (
                    (row.get(path_column) or "").strip(),
                    (row.get(label_column) or "").strip(),
                )
                if not path or not label:
                    raise DataError(f"{self.csv_path}, line {line}: empty path or label.")
                rows.append((path, label))
        if not rows:
            raise DataError(f"{self.csv_path} has a header but no rows.")
        return rows

    def _resolve(self, entry: str, line: int) -> Path:
        path = Path(entry)
        path = path if path.is_absolute() else self.image_root / path
        if path.is_file():
            return path
        if not path.suffix:
            for suffix in IMAGE_SUFFIXES:
                if path.with_suffix(suffix).is_file():
                    return path.with_suffix(suffix)
        raise DataError(
            f"{self.csv_path}, line {line}: image {entry!r} not found (looked for {path}); fix the "
            "path or pass image_root= to the folder the paths are relative to."
        )


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
