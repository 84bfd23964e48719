"""Segmentation folders (Kvasir-SEG layout), class-per-folder trees and path,label CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medprune.data import CsvImageDataset, ImageFolderDataset, SegmentationFolder
from medprune.errors import ConfigError, DataError


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _seg_folder(root: Path, ids: list[str], size: tuple[int, int] = (20, 30)) -> Path:
    """Images with a bright square whose mask marks the left half of the image."""
    rng = np.random.default_rng(0)
    for i in ids:
        _save(root / "images" / f"{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        mask = np.zeros(size, dtype=np.uint8)
        mask[:, : size[1] // 2] = 250
        mask[0, 0] = 100  # below the threshold: background
        _save(root / "masks" / f"{i}.png", mask)
    return root


@pytest.mark.data
def test_kvasir_real(data_dir: Path) -> None:
    root = data_dir / "kvasir-seg"
    full = SegmentationFolder(root, image_size=32)
    assert len(full) == 320
    masks = torch.stack([full[i][1] for i in range(len(full))])  # (320, 32, 32)
    assert set(masks.unique().tolist()) == {0, 1}
    per_mask = masks.float().mean(dim=(1, 2))
    # SOURCE.md: foreground 0.005-0.763 per mask, mean 0.152 (at full resolution).
    assert 0.0 < float(per_mask.min()) < 0.02 and 0.7 < float(per_mask.max()) < 0.8
    assert float(per_mask.mean()) == pytest.approx(0.152, abs=0.01)
    train = SegmentationFolder(root, split="train", image_size=64)
    val = SegmentationFolder(root, split="val", image_size=64)
    assert (len(train), len(val)) == (200, 120)
    assert not set(train.ids) & set(val.ids)
    some = SegmentationFolder(root, image_size=(48, 64), ids=val.ids[:12])
    fractions = []
    for index in range(len(some)):
        image, mask = some[index]
        assert image.shape == (3, 48, 64) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert mask.shape == (48, 64) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 1}
        fractions.append(mask.float().mean().item())
    # SOURCE.md: foreground per mask between 0.005 and 0.76, mean about 0.15.
    assert all(0.0 < f < 0.8 for f in fractions)
    assert 0.05 < float(np.mean(fractions)) < 0.35
    assert some._cache[0] is not None  # decoded once, then served from memory


def test_masks_thresholded_and_resized(tmp_path: Path) -> None:
    root = _seg_folder(tmp_path / "seg", ["a", "b"])
    ds = SegmentationFolder(root, image_size=(10, 16))
    image, mask = ds[0]
    assert image.shape == (3, 10, 16) and mask.shape == (10, 16)
    assert mask[:, :7].eq(1).all() and mask[:, 9:].eq(0).all()
    native = SegmentationFolder(root, image_size=(20, 30))[1][1]
    assert native[0, 0] == 0 and native[1, 0] == 1  # 100 < 128 <= 250
    assert ds.class_counts().sum() == 2 * 10 * 16


def test_split_files_without_extension(tmp_path: Path) -> None:
    root = _seg_folder(tmp_path / "seg", ["a", "b", "c"])
    (root / "train.txt").write_text("a\nc.png\n\n")
    assert SegmentationFolder(root, split="train", image_size=8).ids == ["a", "c"]


def test_segmentation_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="segmentation folder not found: .*absent"):
        SegmentationFolder(tmp_path / "absent", image_size=8)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty/images holds no image files"):
        SegmentationFolder(tmp_path / "empty", image_size=8)
    _save(tmp_path / "only_images" / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"folder .*only_images/masks not found"):
        SegmentationFolder(tmp_path / "only_images", image_size=8)
    root = _seg_folder(tmp_path / "seg", ["a", "b", "c"])
    with pytest.raises(DataError, match=r"split file not found: .*train\.txt"):
        SegmentationFolder(root, split="train", image_size=8)
    with pytest.raises(DataError, match="id\\(s\\) have no image .* 'zz'"):
        SegmentationFolder(root, ids=["a", "zz"], image_size=8)
    (root / "val.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match="line 3: id 'a' is listed twice"):
        SegmentationFolder(root, split="val", image_size=8)
    with pytest.raises(ConfigError, match="split must be a split-file name"):
        SegmentationFolder(root, split="", image_size=8)
    with pytest.raises(ConfigError, match="image_size must be"):
        SegmentationFolder(root, image_size=(8, 8, 8))
    (root / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"image b\.png \(id 'b'\) has no mask in .*masks"):
        SegmentationFolder(root, image_size=8)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = _seg_folder(tmp_path / "seg", ["a", "b"])
    good = (root / "images" / "b.png").read_bytes()
    (root / "images" / "b.png").write_bytes(good[: len(good) // 3])  # truncated
    (root / "images" / "a.png").unlink()
    (root / "images" / "a.jpg").write_bytes(b"not a jpeg at all")
    ds = SegmentationFolder(root, image_size=8)
    with pytest.raises(DataError, match=r"cannot read image .*a\.jpg"):
        ds[0]
    with pytest.raises(DataError, match=r"cannot read image .*b\.png"):
        ds[1]


def test_image_and_mask_size_mismatch(tmp_path: Path) -> None:
    root = _seg_folder(tmp_path / "seg", ["a"])
    _save(root / "masks" / "a.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match="id 'a'.* but its mask is 5x5"):
        SegmentationFolder(root, image_size=8)[0]


def _class_tree(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        for i in range(count):
            value = 40 if name == "benign" else 200
            _save(root / name / f"{i}.png", np.full((12, 9, 3), value, dtype=np.uint8))
    return root


def test_image_folder(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "tree", {"malignant": 2, "benign": 3})
    ds = ImageFolderDataset(root, image_size=(6, 5))
    assert ds.class_names == ("benign", "malignant")
    assert ds.class_counts().tolist() == [3, 2] and ds.labels.tolist() == [0, 0, 0, 1, 1]
    image, label = ds[4]
    assert image.shape == (3, 6, 5) and label == 1
    assert image.mean().item() == pytest.approx(200 / 255, abs=1e-3)
    grey = ImageFolderDataset(root, image_size=4, grayscale=True)
    assert grey.in_channels == 1 and grey[0][0].shape == (1, 4, 4)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "nope", image_size=4)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path / "flat", image_size=4)
    root = _class_tree(tmp_path / "tree", {"a": 1})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty holds no images"):
        ImageFolderDataset(root, image_size=4)


def test_csv_string_and_int_labels(tmp_path: Path) -> None:
    _class_tree(tmp_path / "img", {"benign": 2, "malignant": 1})
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "path,label\nimg/benign/0.png,nevus\nimg/benign/1,nevus\nimg/malignant/0.png,mel\n"
    )
    ds = CsvImageDataset(csv_path, image_size=4)
    assert ds.class_names == ("mel", "nevus") and ds.labels.tolist() == [1, 1, 0]
    assert ds[2][0].shape == (3, 4, 4)
    ints = tmp_path / "ints.csv"
    ints.write_text("path,label\nbenign/0.png,0\nmalignant/0.png,2\n")
    ds = CsvImageDataset(ints, image_root=tmp_path / "img", image_size=4, grayscale=True)
    assert ds.num_classes == 3 and ds.labels.tolist() == [0, 2] and ds.in_channels == 1


def test_csv_errors(tmp_path: Path) -> None:
    _class_tree(tmp_path / "img", {"a": 1})
    with pytest.raises(DataError, match="CSV file not found"):
        CsvImageDataset(tmp_path / "none.csv", image_size=4)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,target\nimg/a/0.png,0\n")
    with pytest.raises(DataError, match="lacks column.*path, label; columns found: file, target"):
        CsvImageDataset(bad, image_size=4)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nimg/a/9.png,0\n")
    with pytest.raises(DataError, match=r"line 2: image 'img/a/9.png' not found"):
        CsvImageDataset(missing, image_size=4)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("path,label\nimg/a/0.png,cat\n")
    with pytest.raises(DataError, match=r"'cat' are not among the classes"):
        CsvImageDataset(unknown, image_size=4, class_names=["dog"])
