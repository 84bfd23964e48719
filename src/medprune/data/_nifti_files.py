"""File discovery for NIfTI segmentation folders: layouts, case ids, nnU-Net channel files,
``dataset.json`` labels and header shapes (no voxel data is read here)."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medprune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: (images folder, labels folder) pairs, tried in this order.
LAYOUTS = (("imagesTr", "labelsTr"), ("images", "labels"), ("images", "masks"))
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def require_nibabel() -> Any:
    """Import and return ``nibabel``.

    Raises:
        ConfigError: nibabel is not installed (names the ``nifti`` extra).
    """
    if importlib.util.find_spec("nibabel") is None:
        raise ConfigError(
            "reading NIfTI files (.nii / .nii.gz) needs nibabel, which is not installed; "
            "run: pip install 'medprune[nifti]' (or pip install nibabel)."
        )
    import nibabel

    return nibabel


def nifti_case_id(name: str) -> str | None:
    """``"case_1.nii.gz"`` -> ``"case_1"``; None for a name that is not a NIfTI file."""
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def strip_nifti_suffix(name: str) -> str:
    """A split-list entry without its ``.nii`` / ``.nii.gz`` suffix (other names unchanged)."""
    return nifti_case_id(Path(name).name) or name


def _index(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the NIfTI files in ``folder``, skipping hidden files (``._x.nii.gz``
    AppleDouble files ship inside the Medical Segmentation Decathlon archives).

    Raises:
        DataError: two files share a stem (``a.nii`` and ``a.nii.gz``).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = nifti_case_id(path.name)
        if stem is None or path.name.startswith(".") or not path.is_file():
            continue
        if stem in found:
            raise DataError(
                f"{folder} holds two files for {stem!r}: {found[stem].name} and {path.name}; "
                "keep one of them."
            )
        found[stem] = path
    return found


@dataclass(frozen=True)
class NiftiCase:
    """One image / label pair: ``images`` holds one file, or one per channel (nnU-Net)."""

    case_id: str
    images: tuple[Path, ...]
    label: Path


def find_layout(root: Path) -> tuple[Path, Path]:
    """The ``(images folder, labels folder)`` of ``root`` (see :data:`LAYOUTS`).

    Raises:
        DataError: ``root`` is missing, or holds none of the layouts.
    """
    expected = "; ".join(f"{root}/{i}/ + {root}/{lab}/" for i, lab in LAYOUTS)
    if not root.is_dir():
        raise DataError(f"NIfTI folder not found: {root}. Expected one of the layouts: {expected}.")
    for images, labels in LAYOUTS:
        if (root / images).is_dir() and (root / labels).is_dir():
            return root / images, root / labels
    present = [name for name in ("imagesTr", "images") if (root / name).is_dir()]
    hint = f" {root / present[0]} exists but its label folder does not." if present else ""
    raise DataError(
        f"{root} is not a NIfTI segmentation folder.{hint} Expected one of the layouts: "
        f"{expected} (image and label files with matching names, .nii or .nii.gz)."
    )


def index_cases(root: Path) -> dict[str, NiftiCase]:
    """Every image of ``root`` with its label file, keyed by case id (sorted).

    nnU-Net names channel files ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ... with the label
    ``<case>.nii.gz``: when every image name ends in ``_<4 digits>`` and no label has the image's
    own name, files are grouped into multi-channel cases (channels in suffix order).

    Raises:
        DataError: no NIfTI images, an image without a label, or cases with other channel sets.
    """
    image_dir, label_dir = find_layout(root)
    images, labels = _index(image_dir), _index(label_dir)
    if not images:
        raise DataError(
            f"{image_dir} holds no NIfTI files (.nii or .nii.gz). Expected layouts: "
            + ", ".join(f"{i}/ + {lab}/" for i, lab in LAYOUTS)
            + "."
        )
    matches = {stem: _CHANNEL.match(stem) for stem in images}
    grouped = all(matches.values()) and not any(stem in labels for stem in images)
    cases: dict[str, list[tuple[str, Path]]] = {}
    for stem, path in images.items():
        match = matches[stem]
        key, channel = (match["case"], match["channel"]) if grouped and match else (stem, "")
        cases.setdefault(key, []).append((channel, path))
    out: dict[str, NiftiCase] = {}
    channels_seen: tuple[str, ...] | None = None
    for case_id, files in sorted(cases.items()):
        files.sort()
        channels = tuple(c for c, _ in files)
        if grouped and channels != tuple(f"{i:04d}" for i in range(len(channels))):
            raise DataError(
                f"case {case_id!r} in {image_dir} has channel files {list(channels)}; nnU-Net "
                "channels are numbered _0000, _0001, ... without gaps."
            )
        if channels_seen is not None and channels != channels_seen:
            raise DataError(
                f"case {case_id!r} in {image_dir} has {len(channels)} channel file(s) but earlier "
                f"cases have {len(channels_seen)}; every case needs the same channels."
            )
        channels_seen = channels
        if case_id not in labels:
            raise DataError(
                f"image {files[0][1]} has no label: expected {label_dir / (case_id + '.nii.gz')} "
                "(or .nii). Add the label or remove the image."
            )
        out[case_id] = NiftiCase(case_id, tuple(p for _, p in files), labels[case_id])
    return out


def header_shape(path: Path) -> tuple[int, ...]:
    """The array shape stored in a NIfTI header (reads no voxel data).

    Raises:
        DataError: the file cannot be read as NIfTI.
    """
    nibabel = require_nibabel()
    try:
        return tuple(int(s) for s in nibabel.load(str(path)).shape)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError, gzip errors, ...
        raise DataError(f"cannot read {path} as NIfTI: {e}") from e


def read_label_names(root: Path) -> tuple[str, ...] | None:
    """Class names from ``root/dataset.json`` (MSD ``{"0": "background", ...}`` or nnU-Net v2
    ``{"background": 0, ...}``); None when absent or not one integer label per class 0..K-1."""
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text()).get("labels")
    except (json.JSONDecodeError, AttributeError, OSError) as e:
        logger.warning("ignoring %s: %s", path, e)
        return None
    if not isinstance(labels, dict) or not labels:
        return None
    if all(str(k).isdigit() for k in labels):
        by_index = {int(k): str(v) for k, v in labels.items()}
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        by_index = {int(v): str(k) for k, v in labels.items()}
    else:  # nnU-Net region labels (lists of values) have no one-to-one class index
        logger.warning("ignoring the labels of %s: not one integer per class", path)
        return None
    if sorted(by_index) != list(range(len(by_index))):
        logger.warning(
            "ignoring the labels of %s: indices %s are not 0..K-1", path, sorted(by_index)
        )
        return None
    return tuple(by_index[i] for i in range(len(by_index)))


def check_num_classes(num_classes: Any, class_names: Sequence[str] | None) -> int | None:
    """Validate a user-given ``num_classes`` (None passes) against ``class_names``."""
    if num_classes is None:
        return None
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ConfigError(
            f"num_classes must be an integer >= 2 (background counts as a class); got "
            f"{num_classes!r}."
        )
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(
            f"class_names has {len(class_names)} names but num_classes is {num_classes}."
        )
    return num_classes
