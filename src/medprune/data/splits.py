"""The config-driven data factory: ``build_splits(spec) -> DataSplits``.

``spec["kind"]`` picks the reader; the other keys depend on the kind. Each kind's keys, with
type, default and meaning, are a pydantic model in :mod:`medprune.config._data` (listed in
``docs/config.md``); unknown keys and bad values are :class:`ConfigError` naming ``data.<key>``::

    {"kind": "medmnist", "path": "$MEDPRUNE_DATA/pneumoniamnist/pneumoniamnist.npz", "image_size": 28}
    {"kind": "segmentation_folder", "path": "$MEDPRUNE_DATA/kvasir-seg", "image_size": 128}
    {"kind": "nifti_folder", "path": "~/data/Task09_Spleen", "image_size": [64, 64, 64]}
    {"kind": "synthetic_classification", "n_train": 1000, "minority_fraction": 0.15, "seed": 0}

Every kind accepts ``seed`` (for seeded splits and subsampling) and ``max_train`` / ``max_val`` /
``max_test`` (keep a stratified, seeded subsample of that many images, for quick runs).

Kinds without a stored validation split make one from the training data (``val_fraction``,
stratified by class, seeded). ``segmentation_folder`` uses split lists in the folder:

* ``train.txt``, ``val.txt`` and ``test.txt``: used as they are;
* only ``train.txt`` and ``val.txt`` (the Kvasir-SEG release): ``train.txt`` is split into train and
  val (``val_fraction``, seeded) and ``val.txt`` becomes the **test** set, so that the official
  validation images are never used for model selection;
* no split lists: every pair is split into train / val / test (``val_fraction``, ``test_fraction``).

``nifti_folder`` (3D segmentation, :class:`NiftiSegmentationFolder`; needs ``pip install
'medprune[nifti]'``) reads ``imagesTr/`` + ``labelsTr/`` (MSD, nnU-Net ``_0000`` channel files) or
``images/`` + ``labels/`` (or ``masks/``) of ``.nii`` / ``.nii.gz`` files; all three split lists,
when present, win over ``val_fraction`` / ``test_fraction``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from medprune.data.arrays import load_medmnist, parse_image_size
from medprune.data.image_files import CsvImageDataset, ImageFolderDataset
from medprune.data.nifti_folder import NiftiSegmentationFolder
from medprune.data.sampling import LabeledSubset, labels_of, split_indices, subsample
from medprune.data.segmentation_folder import SegmentationFolder, read_split_file
from medprune.data.synthetic import make_synthetic_classification, make_synthetic_segmentation
from medprune.errors import ConfigError, DataError
from medprune.registry import Registry
from medprune.typing import PathLike

DATA_ENV = "MEDPRUNE_DATA"


@dataclass(frozen=True)
class DataSplits:
    """The three datasets of a run and what a model needs to know about them.

    Attributes:
        train, val, test: datasets whose items are ``(image (C, *S), target)``.
        task: ``"classification"`` or ``"segmentation"``.
        num_classes: classes (segmentation: including background).
        in_channels: ``C``.
        spatial_dims: 2 or 3.
        image_size: ``S``.
        class_names: one name per class.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    task: str
    num_classes: int
    in_channels: int
    spatial_dims: int
    image_size: tuple[int, ...]
    class_names: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        """JSON-ready sizes (and class counts for classification) of the three splits."""
        out: dict[str, Any] = {
            "task": self.task,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "spatial_dims": self.spatial_dims,
            "image_size": list(self.image_size),
            "class_names": list(self.class_names),
        }
        for name in ("train", "val", "test"):
            dataset = getattr(self, name)
            entry: dict[str, Any] = {"n": len(dataset)}
            labels = labels_of(dataset)
            if labels is not None:
                entry["class_counts"] = torch.bincount(labels, minlength=self.num_classes).tolist()
            out[name] = entry
        return out


def resolve_data_path(path: PathLike) -> Path:
    """Expand ``$MEDPRUNE_DATA`` (and other variables) and ``~`` in a data path.

    When ``MEDPRUNE_DATA`` is not set, it falls back to ``../shared/data`` beside a source checkout
    if that folder exists; otherwise a path that uses it is an error.

    Raises:
        ConfigError: the path uses ``$MEDPRUNE_DATA`` but it is unset and no fallback exists.
    """
    text = os.fspath(path)
    if DATA_ENV in text and DATA_ENV not in os.environ:
        fallback = Path(__file__).resolve().parents[3].parent / "shared" / "data"
        if not fallback.is_dir():
            raise ConfigError(
                f"data path {text!r} uses ${DATA_ENV}, which is not set; "
                f"export {DATA_ENV}=/path/to/datasets or give an absolute path."
            )
        text = text.replace("${" + DATA_ENV + "}", str(fallback)).replace(
            "$" + DATA_ENV, str(fallback)
        )
    return Path(os.path.expanduser(os.path.expandvars(text)))


# ---------------------------------------------------------------------------------------------
# spec checking


def _size(opts: Mapping[str, Any], spatial_dims: int = 2) -> tuple[int, ...]:
    value = opts["image_size"]
    try:
        return parse_image_size(
            list(value) if isinstance(value, (list, tuple)) else value, spatial_dims
        )
    except ConfigError as e:
        raise ConfigError(f"data.{e}") from None  # "data.image_size must be ..."


# ---------------------------------------------------------------------------------------------
# the kinds

_Builder = Callable[[Mapping[str, Any]], tuple[Dataset, Dataset, Dataset]]
#: data kind -> builder of its three splits, from the validated keys (``config._data.check_data``).
_KINDS: Registry[_Builder] = Registry("data kind")


@_KINDS.register("medmnist")
def _medmnist(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    path = resolve_data_path(o["path"])
    size = _size(o) if o["image_size"] is not None else None
    kw = {"image_size": size, "num_classes": o["num_classes"], "class_names": o["class_names"]}
    return tuple(load_medmnist(path, s, **kw) for s in ("train", "val", "test"))  # type: ignore[return-value]


@_KINDS.register("segmentation_folder")
def _segmentation_folder(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    root = resolve_data_path(o["path"])
    size = _size(o)
    val_fraction, test_fraction = o["val_fraction"], o["test_fraction"]
    lists = {s: root / f"{s}.txt" for s in ("train", "val", "test")}

    def folder(ids: Sequence[str] | None) -> SegmentationFolder:
        return SegmentationFolder(root, image_size=size, ids=ids, class_names=o["class_names"])

    if all(p.is_file() for p in lists.values()):
        return tuple(folder(read_split_file(p)) for p in lists.values())  # type: ignore[return-value]
    if lists["train"].is_file() and lists["val"].is_file():
        ids = read_split_file(lists["train"])
        train_idx, val_idx = split_indices(len(ids), None, [val_fraction], o["seed"])
        return (
            folder([ids[i] for i in train_idx]),
            folder([ids[i] for i in val_idx]),
            folder(read_split_file(lists["val"])),
        )
    everything = folder(None)
    parts = split_indices(len(everything), None, [val_fraction, test_fraction], o["seed"])
    return tuple(folder([everything.ids[i] for i in part]) for part in parts)  # type: ignore[return-value]


@_KINDS.register("nifti_folder")
def _nifti_folder(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    """3D NIfTI volumes (:class:`NiftiSegmentationFolder`); ``train.txt`` / ``val.txt`` /
    ``test.txt`` in the folder are used when all three exist, else every case is split
    (``val_fraction``, ``test_fraction``, seeded). ``num_classes`` and the class names are fixed
    once over every case, so the three splits agree, and every label file is checked then
    (decoded, whole numbers below ``num_classes``), before any training."""
    root = resolve_data_path(o["path"])
    val_fraction, test_fraction = o["val_fraction"], o["test_fraction"]
    size = _size(o, 3) if o["image_size"] is not None else None
    kw = {"image_size": size, "normalise": o["normalise"], "resize": o["resize"]}
    everything = NiftiSegmentationFolder(
        root, num_classes=o["num_classes"], class_names=o["class_names"], cache=False, **kw
    )
    kw.update(
        num_classes=everything.num_classes,
        class_names=everything.class_names,
        image_size=everything.image_size,
        cache=o["cache"],
        check_labels=False,  # `everything` checked every label file once
    )
    lists = [root / f"{s}.txt" for s in ("train", "val", "test")]
    if all(p.is_file() for p in lists):
        return tuple(  # type: ignore[return-value]
            NiftiSegmentationFolder(root, ids=read_split_file(p), **kw) for p in lists
        )
    parts = split_indices(len(everything), None, [val_fraction, test_fraction], o["seed"])
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        if not part:
            raise DataError(
                f"{root} has {len(everything)} cases: val_fraction={val_fraction} and "
                f"test_fraction={test_fraction} leave the {name} split empty; raise the fraction, "
                "add cases or write train.txt / val.txt / test.txt."
            )
    return tuple(  # type: ignore[return-value]
        NiftiSegmentationFolder(root, ids=[everything.ids[i] for i in part], **kw) for part in parts
    )


def _split_three(dataset: Dataset, o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    fractions = [o["val_fraction"], o["test_fraction"]]
    parts = split_indices(len(dataset), labels_of(dataset), fractions, o["seed"])  # type: ignore[arg-type]
    return tuple(LabeledSubset(dataset, p) for p in parts)  # type: ignore[return-value]


@_KINDS.register("image_folder")
def _image_folder(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    root = resolve_data_path(o["path"])
    kw = {"image_size": _size(o), "grayscale": bool(o["grayscale"])}
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_all = ImageFolderDataset(root / "train", **kw)
        test = ImageFolderDataset(root / "test", **kw)
        val = ImageFolderDataset(root / "val", **kw) if (root / "val").is_dir() else None
        for other in (test, val):
            if other is not None and other.class_names != train_all.class_names:
                raise DataError(
                    f"{other.root} has classes {list(other.class_names)} but {train_all.root} has "
                    f"{list(train_all.class_names)}; every split needs the same class folders."
                )
        if val is not None:
            return train_all, val, test
        train, val_split, _ = _split_three(train_all, {**o, "test_fraction": 0.0})
        return train, val_split, test
    return _split_three(ImageFolderDataset(root, **kw), o)


@_KINDS.register("csv")
def _csv(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    root = resolve_data_path(o["image_root"]) if o["image_root"] is not None else None
    kw = {
        "image_root": root,
        "image_size": _size(o),
        "grayscale": bool(o["grayscale"]),
        "path_column": o["path_column"],
        "label_column": o["label_column"],
    }

    train_all = CsvImageDataset(resolve_data_path(o["path"]), **kw)
    kw["class_names"] = train_all.class_names  # val / test labels map to the same indices

    def read(key: str) -> CsvImageDataset | None:
        return CsvImageDataset(resolve_data_path(o[key]), **kw) if o[key] is not None else None

    val, test = read("val_path"), read("test_path")
    o = {**o, **({"val_fraction": 0.0} if val else {}), **({"test_fraction": 0.0} if test else {})}
    train, val_split, test_split = _split_three(train_all, o)
    return train, val or val_split, test or test_split


@_KINDS.register("synthetic_classification")
def _synthetic_classification(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    kw = {k: o[k] for k in ("image_size", "in_channels", "num_classes", "minority_fraction")}
    return tuple(  # type: ignore[return-value]
        make_synthetic_classification(o[f"n_{s}"], seed=_derived_seed(o["seed"], i), **kw)
        for i, s in enumerate(("train", "val", "test"))
    )


@_KINDS.register("synthetic_segmentation")
def _synthetic_segmentation(o: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset]:
    kw = {k: o[k] for k in ("image_size", "spatial_dims", "in_channels")}
    return tuple(  # type: ignore[return-value]
        make_synthetic_segmentation(o[f"n_{s}"], seed=_derived_seed(o["seed"], i), **kw)
        for i, s in enumerate(("train", "val", "test"))
    )


def _derived_seed(seed: int, split_index: int) -> int:
    """Distinct, reproducible seeds per split (so train, val and test never share images)."""
    return seed * 1_000_003 + split_index


def list_data_kinds() -> list[str]:
    """The ``kind`` values :func:`build_splits` accepts."""
    return _KINDS.list()


#: data kinds whose samples are (image, mask) pairs; the others are classification data.
_SEGMENTATION_KINDS = ("segmentation_folder", "nifti_folder", "synthetic_segmentation")


def check_data_spec(spec: Mapping[str, Any]) -> str:
    """Check ``spec``'s kind and keys without reading any data; returns the task of that kind
    (``"classification"`` or ``"segmentation"``).

    Raises:
        ConfigError: as :func:`build_splits` does for an unknown kind or key (with a
            did-you-mean), a missing required key, or a bad value.
    """
    _checked_options(spec)
    return "segmentation" if spec["kind"] in _SEGMENTATION_KINDS else "classification"


def _checked_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The validated keys of ``spec`` (:func:`medprune.config._data.check_data`)."""
    from medprune.config._data import check_data

    if not isinstance(spec, Mapping):
        raise ConfigError(f"data spec must be a mapping with a 'kind' key; got {spec!r}.")
    if "kind" not in spec:
        raise ConfigError(f"data spec needs a 'kind' key, one of: {', '.join(list_data_kinds())}.")
    _KINDS.get(spec["kind"])  # an unknown kind: did-you-mean
    return check_data(spec)


def build_splits(spec: Mapping[str, Any]) -> DataSplits:
    """Build train / val / test datasets from a config mapping.

    Args:
        spec: ``{"kind": ..., **kind_keys}``; see the module docstring and :func:`list_data_kinds`.

    Returns:
        :class:`DataSplits`.

    Raises:
        ConfigError: unknown kind or key (with a did-you-mean), a missing required key, or a bad
            value (naming the key, the value and what is allowed).
        DataError: the files themselves are missing or broken.
    """
    opts = _checked_options(spec)
    train, val, test = _KINDS.get(spec["kind"])(opts)
    seed = opts["seed"]
    train = subsample(train, opts["max_train"], seed)
    val = subsample(val, opts["max_val"], seed + 1)
    test = subsample(test, opts["max_test"], seed + 2)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task=str(train.task),  # type: ignore[attr-defined]
        num_classes=int(train.num_classes),  # type: ignore[attr-defined]
        in_channels=int(train.in_channels),  # type: ignore[attr-defined]
        spatial_dims=int(train.spatial_dims),  # type: ignore[attr-defined]
        image_size=tuple(train.image_size),  # type: ignore[attr-defined]
        class_names=tuple(train.class_names),  # type: ignore[attr-defined]
    )
