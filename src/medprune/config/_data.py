"""The ``data`` section: one frozen pydantic model per data kind, every key with its type,
default, constraints and meaning (the source of the ``data.*`` tables of ``docs/config.md``).

:func:`check_data` validates a ``data`` mapping against its kind's model; errors name the dotted
key (``data.image_size must be an integer >= 8; got 'abc'.``). The config keeps the mapping as
the user wrote it (defaults are not written into it); ``medprune.data.build_splits`` reads the
validated values.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from medprune.errors import ConfigError

__all__ = ["DATA_MODELS", "check_data", "common_data_keys"]

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Size = Annotated[int, Field(gt=0)]
ImageSize = Size | list[Size]

_PATH = "the dataset file or folder (`$MEDPRUNE_DATA` and `~` are expanded)"
_SIZE = "every image is resized to this: one int (square / cube) or one int per axis"
_NAMES = "one name per class (null: from the dataset)"
_VAL = "share of the training data held out for validation when the dataset has no val split"
_TEST = "share held out for testing when the dataset has no test split"


class _Common(BaseModel):
    """Keys every data kind accepts."""

    model_config = _STRICT

    seed: int = Field(0, ge=0, description="seed of the splits and subsamples")
    max_train: int | None = Field(
        None, ge=1, description="keep a stratified, seeded subsample of this many training images"
    )
    max_val: int | None = Field(None, ge=1, description="the same for the validation split")
    max_test: int | None = Field(None, ge=1, description="the same for the test split")


class MedmnistData(_Common):
    """A MedMNIST `.npz` file (its own train / val / test splits)."""

    kind: Literal["medmnist"]
    path: str = Field(description=_PATH)
    image_size: ImageSize | None = Field(None, description=_SIZE + " (null: stored size)")
    num_classes: int | None = Field(None, ge=1, description="classes (null: from the labels)")
    class_names: list[str] | None = Field(None, description=_NAMES)


class SegmentationFolderData(_Common):
    """A Kvasir-SEG style folder of images and masks (`train.txt` / `val.txt` / `test.txt`
    split lists used when present)."""

    kind: Literal["segmentation_folder"]
    path: str = Field(description=_PATH)
    image_size: ImageSize = Field(256, description=_SIZE)
    val_fraction: Fraction = Field(0.2, description=_VAL)
    test_fraction: Fraction = Field(0.2, description=_TEST)
    class_names: list[str] | None = Field(None, description="two names: background, foreground")


class NiftiFolderData(_Common):
    """3D NIfTI volumes: `imagesTr/` + `labelsTr/` (MSD, nnU-Net `_0000` channel files) or
    `images/` + `labels/` (or `masks/`); needs `pip install 'medprune[nifti]'`."""

    kind: Literal["nifti_folder"]
    path: str = Field(description=_PATH)
    image_size: ImageSize | None = Field(
        None, description="`[D, H, W]` or one int every volume is brought to (null: stored size)"
    )
    num_classes: int | None = Field(
        None,
        ge=2,
        description="classes incl. background (null: `dataset.json`, else max label + 1)",
    )
    class_names: list[str] | None = Field(None, description=_NAMES)
    normalise: Literal["zscore", "minmax", "none"] = Field(
        "zscore", description="per-volume, per-channel intensity normalisation"
    )
    resize: Literal["interpolate", "crop_pad"] = Field(
        "interpolate", description="resample the whole volume, or centre crop / zero pad"
    )
    cache: bool = Field(True, description="keep decoded volumes in memory")
    val_fraction: Fraction = Field(0.2, description=_VAL)
    test_fraction: Fraction = Field(0.2, description=_TEST)


class ImageFolderData(_Common):
    """Class sub-folders of images (`train/` + `test/` [+ `val/`] when present)."""

    kind: Literal["image_folder"]
    path: str = Field(description=_PATH)
    image_size: ImageSize = Field(64, description=_SIZE)
    grayscale: bool = Field(False, description="read images as one channel")
    val_fraction: Fraction = Field(0.15, description=_VAL)
    test_fraction: Fraction = Field(0.15, description=_TEST)


class CsvData(_Common):
    """A CSV of image paths and labels (optional separate val / test CSVs)."""

    kind: Literal["csv"]
    path: str = Field(description="the training CSV (a header line naming the columns)")
    image_size: ImageSize = Field(64, description=_SIZE)
    grayscale: bool = Field(False, description="read images as one channel")
    image_root: str | None = Field(None, description="folder the CSV paths are relative to")
    val_path: str | None = Field(None, description="a validation CSV (null: split from train)")
    test_path: str | None = Field(None, description="a test CSV (null: split from train)")
    path_column: str = Field("path", description="column holding the image paths")
    label_column: str = Field("label", description="column holding the labels")
    val_fraction: Fraction = Field(0.15, description=_VAL)
    test_fraction: Fraction = Field(0.15, description=_TEST)


class SyntheticClassificationData(_Common):
    """Synthetic 2D images with a rare class (no files needed)."""

    kind: Literal["synthetic_classification"]
    n_train: int = Field(1000, ge=1, description="training images")
    n_val: int = Field(250, ge=1, description="validation images")
    n_test: int = Field(250, ge=1, description="test images")
    image_size: int = Field(32, ge=8, description="side of the square images")
    in_channels: int = Field(1, ge=1, description="image channels")
    num_classes: int = Field(2, ge=2, description="classes")
    minority_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="share of the rare class")


class SyntheticSegmentationData(_Common):
    """Synthetic blobs with masks, 2D or 3D (no files needed)."""

    kind: Literal["synthetic_segmentation"]
    n_train: int = Field(160, ge=1, description="training images")
    n_val: int = Field(40, ge=1, description="validation images")
    n_test: int = Field(40, ge=1, description="test images")
    image_size: int = Field(32, ge=8, description="side of the square / cubic images")
    spatial_dims: Literal[2, 3] = Field(2, description="2D images or 3D volumes")
    in_channels: int = Field(1, ge=1, description="image channels")


#: data kind -> its model (the order of the kinds in ``docs/config.md``).
DATA_MODELS: dict[str, type[BaseModel]] = {
    "medmnist": MedmnistData,
    "segmentation_folder": SegmentationFolderData,
    "nifti_folder": NiftiFolderData,
    "image_folder": ImageFolderData,
    "csv": CsvData,
    "synthetic_classification": SyntheticClassificationData,
    "synthetic_segmentation": SyntheticSegmentationData,
}
_ROOTS = {
    kind: create_model(f"_{model.__name__}Root", __config__=_STRICT, data=(model, ...))
    for kind, model in DATA_MODELS.items()
}


def _plain(value: Any) -> Any:
    """Python-API values as YAML would give them: a path as text, a tuple as a list."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return list(value) if isinstance(value, tuple) else value


def common_data_keys() -> list[str]:
    """The keys every data kind accepts (``seed``, ``max_train``, ...)."""
    return list(_Common.model_fields)


def check_data(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``data`` mapping against its kind's model.

    Args:
        spec: ``{"kind": ..., **keys}`` (path-like values are read as text, tuples as lists).

    Returns:
        Every key of the kind, the defaults filled in.

    Raises:
        ConfigError: an unknown kind, an unknown key (did-you-mean), a missing required key or a
            bad value, each naming ``data.<key>``, the value and what is allowed.
    """
    from medprune.config._errors import config_error

    if not isinstance(spec, Mapping):
        raise ConfigError(f"data must be a mapping with a 'kind' key; got {spec!r}.")
    kind = spec.get("kind")
    if kind not in DATA_MODELS:
        close = difflib.get_close_matches(str(kind), list(DATA_MODELS), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"data.kind must be one of {', '.join(DATA_MODELS)}; got {kind!r}.{hint}")
    raw = {"data": {k: _plain(v) for k, v in spec.items()}}
    root = _ROOTS[str(kind)]
    try:
        checked = root.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, root, raw) from None
    return checked.data.model_dump()  # type: ignore[attr-defined,no-any-return]
