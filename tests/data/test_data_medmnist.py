"""MedMNIST .npz reader: real files, resizing, layouts, and every corrupt-input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medprune.data import ArrayDataset, load_medmnist
from medprune.errors import ConfigError, DataError


def _write_npz(path: Path, n: tuple[int, int, int] = (6, 3, 4), **overrides: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 3).reshape(-1, 1).astype(np.uint8)
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "sizes", "train_counts"),
    [
        ("pneumoniamnist", (4708, 524, 624), [1214, 3494]),
        ("breastmnist", (546, 78, 156), [147, 399]),
    ],
)
def test_real_medmnist_shapes_and_counts(
    data_dir: Path, name: str, sizes: tuple[int, int, int], train_counts: list[int]
) -> None:
    path = data_dir / name / f"{name}.npz"
    for split, size in zip(("train", "val", "test"), sizes, strict=True):
        ds = load_medmnist(path, split)
        assert len(ds) == size
        assert ds.labels.shape == (size,) and ds.labels.dtype == torch.int64
        assert (ds.num_classes, ds.in_channels, ds.image_size) == (2, 1, (28, 28))
    train = load_medmnist(path, "train")
    assert train.class_counts().tolist() == train_counts
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label.dtype == torch.int64 and label.ndim == 0


@pytest.mark.data
def test_real_medmnist_resize(data_dir: Path) -> None:
    path = data_dir / "breastmnist" / "breastmnist.npz"
    native = load_medmnist(path, "val")
    big = load_medmnist(path, "val", image_size=56)
    assert big.image_size == (56, 56) and len(big) == len(native)
    # Downsampling the upsampled image gives back roughly the original.
    back = torch.nn.functional.avg_pool2d(big[3][0][None], 2)[0]
    assert (back - native[3][0]).abs().mean() < 0.03


def test_rgb_layout_and_squeezed_labels(tmp_path: Path) -> None:
    rgb = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 255  # pure green
    path = _write_npz(tmp_path / "rgb.npz", train_images=rgb)
    ds = load_medmnist(path, "train")
    image, _ = ds[0]
    assert ds.in_channels == 3 and image.shape == (3, 8, 8)
    assert image[1].eq(1.0).all() and image[0].eq(0.0).all()
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_num_classes_inferred_from_all_splits(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "a.npz", val_labels=np.array([[0], [4], [1]], dtype=np.uint8))
    assert load_medmnist(path, "train").num_classes == 5


def test_3d_volumes(tmp_path: Path) -> None:
    vol = np.full((6, 10, 10, 10), 128, dtype=np.uint8)
    path = _write_npz(tmp_path / "vol.npz", train_images=vol)
    ds = load_medmnist(path, "train", image_size=6)
    assert ds.spatial_dims == 3 and ds[0][0].shape == (1, 6, 6, 6)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: p, DataError, "MedMNIST file not found"),
        (lambda p: (p.write_text("hello"), p)[1], DataError, "not a readable .npz"),
        (
            lambda p: (p.write_bytes(_write_npz(p).read_bytes()[:300]), p)[1],
            DataError,
            "corrupt or truncated",
        ),
        (
            lambda p: (np.save(p.with_suffix(".npy"), np.zeros(3)), p.with_suffix(".npy"))[1],
            DataError,
            "single array",
        ),
    ],
    ids=["missing", "not-npz", "truncated", "npy"],
)
def test_file_errors(tmp_path: Path, make, error, match: str) -> None:
    path = make(tmp_path / "x.npz")
    with pytest.raises(error, match=match):
        load_medmnist(path, "train")


def test_missing_key_names_keys_found(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(
        path, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8)
    )
    with pytest.raises(
        DataError, match=r"no key 'test_images'; keys found: train_images, train_labels"
    ):
        load_medmnist(path, "test")


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"train_labels": np.zeros((5, 1), np.uint8)}, "holds 6 images but train_labels holds 5"),
        ({"train_labels": np.zeros((6, 1), np.float32)}, "labels must be integer"),
        ({"train_labels": np.array([[0], [1], [-1], [0], [1], [0]])}, "contains -1"),
        ({"train_labels": np.zeros((6, 14), np.uint8)}, "multi-label"),
        ({"train_images": np.zeros((6, 8), np.uint8)}, r"expected \(N, H, W\)"),
        ({"train_images": np.full((6, 8, 8), 2.0, np.float32)}, r"must lie in \[0, 1\]"),
    ],
    ids=["length", "float-labels", "negative", "multilabel", "image-ndim", "float-range"],
)
def test_inconsistent_contents(tmp_path: Path, override: dict, match: str) -> None:
    path = _write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DataError, match=match):
        load_medmnist(path, "train")


def test_labels_out_of_range_for_num_classes(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "a.npz")
    with pytest.raises(DataError, match=r"go up to 2 but num_classes=2"):
        load_medmnist(path, "train", num_classes=2)


def test_bad_split_and_size(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "a.npz")
    with pytest.raises(ConfigError, match="split must be one of train, val, test; got 'valid'"):
        load_medmnist(path, "valid")
    with pytest.raises(ConfigError, match="image_size must be"):
        load_medmnist(path, "train", image_size=(0, 4))


def test_array_dataset_validates() -> None:
    with pytest.raises(DataError, match="differ in length"):
        ArrayDataset(torch.zeros(3, 1, 4, 4), torch.zeros(2, dtype=torch.int64), num_classes=2)
    with pytest.raises(DataError, match=r"targets must lie in \[0, 1\]"):
        ArrayDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 2]), num_classes=2)
    with pytest.raises(DataError, match="masks have spatial shape"):
        ArrayDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), num_classes=2)
