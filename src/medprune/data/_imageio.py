"""Image-file helpers shared by the folder and CSV readers: decode, resize, validate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medprune.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def is_image_file(path: Path) -> bool:
    """True for a regular file whose suffix is a known image format."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def strip_image_suffix(name: str) -> str:
    """``"abc.jpg"`` -> ``"abc"``; names without a known image suffix are returned unchanged."""
    path = Path(name)
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else name


def index_folder(folder: Path) -> dict[str, Path]:
    """Map each image's id (file name without suffix) to its path, for one folder (not recursive).

    Raises:
        DataError: two files share an id (e.g. ``a.jpg`` and ``a.png``).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path):
            continue
        if path.stem in found:
            raise DataError(
                f"{folder} holds two images with id {path.stem!r}: {found[path.stem].name} and "
                f"{path.name}; keep one of them."
            )
        found[path.stem] = path
    return found


def read_image(
    path: Path, *, mode: str, size: Sequence[int], resample: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image file, convert it to ``mode`` and resize it.

    Args:
        path: the image file.
        mode: PIL mode, ``"RGB"`` or ``"L"``.
        size: ``(H, W)`` of the result.
        resample: PIL filter (``Image.BILINEAR`` for images, ``Image.NEAREST`` for masks).

    Returns:
        uint8 ``(H, W, 3)`` for RGB or ``(H, W)`` for L, and the stored ``(W, H)`` of the file.

    Raises:
        DataError: the file is missing, unreadable or corrupt (names the file).
    """
    height, width = int(size[0]), int(size[1])
    try:
        with Image.open(path) as img:
            original = img.size
            # JPEG: decode at a reduced scale (still >= the target size); much faster for big files.
            img.draft(mode, (width, height))
            img = img.convert(mode)
            if img.size != (width, height):
                img = img.resize((width, height), resample=resample)
            array = np.array(img, dtype=np.uint8)  # writable copy
    except FileNotFoundError as e:
        raise DataError(f"image file not found: {path}.") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(
            f"cannot read image {path}: {e}. The file is corrupt or not an image; "
            "replace it or remove it from the dataset."
        ) from e
    return array, original
