"""3D segmentation from NIfTI (``.nii`` / ``.nii.gz``) image + label folders.

Layouts (the first one present is used)::

    root/imagesTr/<case>.nii.gz  + root/labelsTr/<case>.nii.gz   Medical Segmentation Decathlon
    root/imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...      nnU-Net: one file per channel
                                 + root/labelsTr/<case>.nii.gz
    root/images/<case>.nii(.gz)  + root/labels/<case>.nii(.gz)    (or root/masks/)
    root/dataset.json            optional: its "labels" give num_classes and class names
    root/train.txt, val.txt, test.txt   optional split lists (one case id per line)

Files are read with MONAI's ``LoadImage`` and its ``NibabelReader`` (the ``nifti`` extra:
``pip install 'medprune[nifti]'``). Arrays keep the stored voxel order (nibabel's ``i, j, k``,
called ``D, H, W`` here); nothing is reoriented or resampled to a voxel spacing. A 4D image file
(MSD's multi-modal volumes, channels last) becomes ``C`` channels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medprune.data._nifti_files import (
    NiftiCase,
    check_num_classes,
    header_shape,
    index_cases,
    read_label_names,
    require_nibabel,
    strip_nifti_suffix,
)
from medprune.data.arrays import parse_image_size
from medprune.data.segmentation_folder import read_split_file
from medprune.errors import ConfigError, DataError
from medprune.progress import progress_bar
from medprune.typing import PathLike

logger = logging.getLogger(__name__)

NORMALISE = ("zscore", "minmax", "none")
RESIZE = ("interpolate", "crop_pad")


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
    return str(value)


class NiftiSegmentationFolder(Dataset):
    """3D image + label volumes from a NIfTI folder (see the module docstring for the layouts).

    Each item is decoded, normalised per volume and channel, then brought to ``image_size``:

    * ``normalise="zscore"`` (default): ``(x - mean) / std`` per channel (MONAI
      ``NormalizeIntensity(channel_wise=True)``, MRI-style); ``"minmax"``: per channel to
      ``[0, 1]``; ``"none"``: stored intensities (e.g. to window CT yourself).
    * ``resize="interpolate"`` (default): MONAI ``Resize``, trilinear for the image and nearest for
      the label (the whole field of view, anisotropic scaling; no anti-aliasing: MONAI's Gaussian
      one costs ~7 s per 256x256x128 volume on one core, 700x the resize);
      ``"crop_pad"``: MONAI ``ResizeWithPadOrCrop``, a centred crop / zero pad (voxel size kept,
      borders lost or added). Normalisation comes first, so z-score padding is the mean.

    Args:
        root: the dataset folder.
        image_size: ``(D, H, W)`` (or one int) every case is brought to; None keeps the stored size,
            which must then be the same for every case.
        split: None for every case, or a split-list name: ``root/<split>.txt``.
        ids: explicit case ids (overrides ``split``).
        num_classes: classes including background; None = from ``root/dataset.json`` when it lists
            the labels, else the largest label value found + 1 (reads every label once).
        class_names: one name per class; None = from ``dataset.json``, else ``background``,
            ``class_1``, ...
        normalise: ``"zscore"``, ``"minmax"`` or ``"none"``.
        resize: ``"interpolate"`` or ``"crop_pad"``.
        cache: keep decoded, resized volumes in memory (``C * D * H * W * 4`` bytes per case),
            so later epochs do no I/O (with ``num_workers > 0`` each loader worker keeps its own
            copy); turn off for datasets that do not fit.
        check_labels: decode every label file now and check its values (whole numbers in
            ``[0, num_classes)``), so a broken case fails when the dataset is opened, not in the
            middle of training; False when another dataset over the same files checked them.
        progress: show a progress bar while the labels are checked.

    Items are ``(image float32 (C, D, H, W), label int64 (D, H, W) in [0, num_classes))``.

    Raises:
        ConfigError: nibabel is missing (``pip install 'medprune[nifti]'``) or an option is bad.
        DataError: no layout or no images, an image without a label, shapes that differ between
            an image and its label, a label file that does not decode, non-integer labels or
            labels outside ``[0, num_classes)`` (each naming the file, the value and the fix).
    """

    task = "segmentation"
    spatial_dims = 3
    labels = None

    def __init__(
        self,
        root: PathLike,
        *,
        image_size: int | Sequence[int] | None = None,
        split: str | None = None,
        ids: Sequence[str] | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        normalise: str = "zscore",
        resize: str = "interpolate",
        cache: bool = True,
        check_labels: bool = True,
        progress: bool = True,
    ) -> None:
        require_nibabel()
        self.root = Path(root)
        self.normalise = _choice("normalise", normalise, NORMALISE)
        self.resize = _choice("resize", resize, RESIZE)
        self.cache = bool(cache)
        target = None if image_size is None else parse_image_size(image_size, 3)
        check_num_classes(num_classes, class_names)  # before any file is read
        cases = index_cases(self.root)
        self.ids: list[str] = self._select(cases, split, ids)
        self.cases: list[NiftiCase] = [cases[i] for i in self.ids]
        self.in_channels, native = self._check_headers(target is None)
        self.image_size: tuple[int, ...] = target or native
        self._progress = bool(progress)
        self._label_ranges: list[tuple[int, int]] | None = None
        self.class_names, self.num_classes = self._classes(num_classes, class_names)
        if check_labels:
            self.check_labels()
        self._cache: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.cases)

    # -- construction ---------------------------------------------------------------------------

    def _select(
        self, cases: dict[str, NiftiCase], split: str | None, ids: Sequence[str] | None
    ) -> list[str]:
        if ids is not None:
            chosen = [strip_nifti_suffix(str(i)) for i in ids]
        elif split is not None:
            if not isinstance(split, str) or not split:
                raise ConfigError(
                    f"split must be a split-list name such as 'train'; got {split!r}."
                )
            chosen = [strip_nifti_suffix(i) for i in read_split_file(self.root / f"{split}.txt")]
        else:
            chosen = list(cases)
        if not chosen:
            raise DataError(f"no cases selected in {self.root} (split={split!r}, ids={ids!r}).")
        unknown = [i for i in chosen if i not in cases]
        if unknown:
            raise DataError(
                f"{len(unknown)} case id(s) have no image in {self.root}, e.g. "
                f"{', '.join(map(repr, unknown[:3]))}; known ids look like "
                f"{', '.join(map(repr, list(cases)[:3]))}. Fix the split list or ids."
            )
        return chosen

    def _check_headers(self, native: bool) -> tuple[int, tuple[int, ...]]:
        """Channels and stored ``(D, H, W)`` from the headers; checks labels against images (and,
        when ``native``, that every case has the first case's size)."""
        first: tuple[NiftiCase, int, tuple[int, ...]] | None = None
        for case in self.cases:
            channels, spatial = _case_header(case)
            if first is None:
                first = (case, channels, spatial)
            elif channels != first[1]:
                raise DataError(
                    f"{case.images[0]} has {channels} channel(s) but {first[0].images[0]} has "
                    f"{first[1]}; every case needs the same channels."
                )
            elif native and spatial != first[2]:
                raise DataError(
                    f"{case.images[0]} is {spatial} but {first[0].images[0]} is {first[2]}; "
                    "volumes of different sizes need image_size (e.g. image_size: [32, 32, 32])."
                )
        assert first is not None  # _select keeps at least one case
        return first[1], first[2]

    def _classes(
        self, num_classes: int | None, class_names: Sequence[str] | None
    ) -> tuple[tuple[str, ...], int]:
        names = tuple(str(n) for n in class_names) if class_names is not None else None
        given = check_num_classes(num_classes, names)
        from_json = read_label_names(self.root)
        if given is None:
            if names is not None:
                given = check_num_classes(len(names), names)
            elif from_json is not None and len(from_json) >= 2:
                given = len(from_json)
            else:
                given = max(2, self._max_label() + 1)
        if names is None:
            names = from_json if from_json is not None and len(from_json) == given else None
        names = names or ("background", *(f"class_{i}" for i in range(1, given)))
        return names, given

    def _max_label(self) -> int:
        """Largest label value over the selected cases (reads every label file once)."""
        return max((high for _, high in self._scan_labels()), default=0)

    def _scan_labels(self) -> list[tuple[int, int]]:
        """``(min, max)`` of each case's label, decoding every label file once (a truncated file
        or fractional values raise :class:`DataError` naming the file)."""
        if self._label_ranges is not None:
            return self._label_ranges
        nibabel = require_nibabel()
        ranges = []
        bar = progress_bar(
            self.cases, desc=f"checking labels in {self.root.name}", unit="files",
            enabled=self._progress,
        )  # fmt: skip
        for case in bar:
            try:
                label = np.asanyarray(nibabel.load(str(case.label)).dataobj)
            except Exception as e:  # truncated .gz, bad header, ...
                raise DataError(
                    f"cannot decode label {case.label}: {e}. Re-export the file, or remove case "
                    f"{case.case_id!r} (its image and label) from {self.root}."
                ) from e
            _check_integer(label, case.label)
            ranges.append((int(label.min()), int(label.max())) if label.size else (0, 0))
        self._label_ranges = ranges
        return ranges

    def check_labels(self) -> None:
        """Decode every label file and check its values are class indices ``[0, num_classes)``.

        Raises:
            DataError: the first bad file, with its value and the fix.
        """
        for case, (low, high) in zip(self.cases, self._scan_labels(), strict=True):
            _check_range_values(low, high, case.label, self.num_classes)

    # -- items ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.cases)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image float32 (C, D, H, W), label uint8/int64 (D, H, W))`` at ``image_size``."""
        cached = self._cache[index]
        if cached is not None:
            return cached
        from monai.transforms import (
            LoadImage,
            NormalizeIntensity,
            Resize,
            ResizeWithPadOrCrop,
            ScaleIntensity,
        )

        case = self.cases[index]
        reader = {"reader": "NibabelReader", "image_only": True, "dtype": np.float32}
        files = [str(p) for p in case.images]
        try:
            image = LoadImage(ensure_channel_first=True, **reader)(
                files if len(files) > 1 else files[0]
            )
        except Exception as e:  # truncated .gz, bad header, ...
            raise DataError(f"cannot decode {', '.join(files)}: {e}") from e
        try:
            label = LoadImage(**reader)(str(case.label))
        except Exception as e:
            raise DataError(f"cannot decode {case.label}: {e}") from e
        image, label = _plain(image), _plain(label)  # MetaTensor -> Tensor
        if tuple(image.shape) != (self.in_channels, *label.shape[:3]) or label.dim() < 3:
            raise DataError(
                f"case {case.case_id!r}: image {case.images[0]} decodes to {tuple(image.shape)} "
                f"and label {case.label} to {tuple(label.shape)}; expected ({self.in_channels}, "
                "D, H, W) and (D, H, W)."
            )
        label = label.reshape(label.shape[:3])  # (D, H, W[, 1]) -> (D, H, W)
        _check_integer(label.numpy(), case.label)
        _check_range(label, case.label, self.num_classes)
        if self.normalise == "zscore":
            image = _plain(NormalizeIntensity(channel_wise=True)(image))
        elif self.normalise == "minmax":
            image = _plain(ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)(image))
        size = self.image_size
        if tuple(image.shape[1:]) != size:
            if self.resize == "interpolate":
                image = _plain(Resize(size, mode="trilinear")(image))
                label = _plain(Resize(size, mode="nearest")(label[None]))[0]
            else:
                image = _plain(ResizeWithPadOrCrop(size)(image))
                label = _plain(ResizeWithPadOrCrop(size)(label[None]))[0]
        dtype = torch.uint8 if self.num_classes <= 256 else torch.int64
        pair = (image.float().contiguous(), label.round().to(dtype).contiguous())
        if self.cache:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self._load(index)
        return (image.clone() if self.cache else image), label.to(torch.int64)

    def preload(self) -> NiftiSegmentationFolder:
        """Decode every case now (fills the cache when ``cache=True``); returns ``self``."""
        for index in range(len(self)):
            self._load(index)
        return self

    def class_counts(self) -> torch.Tensor:
        """int64 ``(num_classes,)``: voxels of each class at ``image_size`` (decodes every case)."""
        counts = torch.zeros(self.num_classes, dtype=torch.int64)
        for index in range(len(self)):
            counts += torch.bincount(self._load(index)[1].flatten().long(), minlength=len(counts))
        return counts

    def __repr__(self) -> str:
        return (
            f"NiftiSegmentationFolder(root={str(self.root)!r}, n={len(self)}, "
            f"in_channels={self.in_channels}, image_size={self.image_size}, "
            f"num_classes={self.num_classes})"
        )


def _plain(x: Any) -> torch.Tensor:
    """A MONAI ``MetaTensor`` (or array) as a plain ``torch.Tensor``."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _case_header(case: NiftiCase) -> tuple[int, tuple[int, ...]]:
    """``(channels, (D, H, W))`` of a case from its headers; the label must match the image."""
    spatial: tuple[int, ...] | None = None
    channels = 0
    for path in case.images:
        shape = header_shape(path)
        if len(shape) < 3 or (len(case.images) > 1 and len(shape) != 3):
            expected = (
                "3D (one volume per nnU-Net channel file)"
                if len(case.images) > 1
                else ("3D, or 4D with channels last")
            )
            raise DataError(f"{path} has shape {shape}; expected {expected}.")
        if spatial is not None and shape[:3] != spatial:
            raise DataError(
                f"channel files of case {case.case_id!r} differ in shape: {case.images[0]} is "
                f"{spatial}, {path} is {shape[:3]}."
            )
        spatial = shape[:3]
        channels += int(np.prod(shape[3:], dtype=np.int64))
    assert spatial is not None  # index_cases gives every case at least one image
    label_shape = header_shape(case.label)
    if label_shape[:3] != spatial or any(s != 1 for s in label_shape[3:]):
        raise DataError(
            f"label {case.label} has shape {label_shape} but its image {case.images[0]} has "
            f"(D, H, W) = {spatial}; a label volume must have its image's shape."
        )
    return channels, spatial


def _check_integer(label: np.ndarray, path: Path) -> None:
    if np.issubdtype(label.dtype, np.integer):
        return
    bad = label[label != np.round(label)]
    if bad.size:
        raise DataError(
            f"label {path} holds non-integer values (e.g. {float(bad.flat[0])!r}); labels must be "
            "integer class indices (0 = background). Was an image saved as the label?"
        )


def _check_range(label: torch.Tensor, path: Path, num_classes: int) -> None:
    _check_range_values(int(label.min()), int(label.max()), path, num_classes)


def _check_range_values(low: int, high: int, path: Path, num_classes: int) -> None:
    if low < 0:
        raise DataError(
            f"label {path} holds the value {low}; labels must be class indices >= 0 "
            f"(0 = background). Fix the label file."
        )
    if high >= num_classes:
        raise DataError(
            f"label {path} holds values {low}..{high} but num_classes is {num_classes} (classes "
            f"0..{num_classes - 1}); set data.num_classes to at least {high + 1} or fix the label."
        )
