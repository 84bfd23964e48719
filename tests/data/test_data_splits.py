"""build_splits for every kind, its config errors, and resolve_data_path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medprune.data import DataSplits, build_splits, labels_of, list_data_kinds, resolve_data_path
from medprune.errors import ConfigError, DataError


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _seg_folder(root: Path, n: int) -> list[str]:
    ids = [f"id{i:02d}" for i in range(n)]
    for i in ids:
        _save(root / "images" / f"{i}.png", np.full((10, 12, 3), 90, np.uint8))
        _save(root / "masks" / f"{i}.png", np.eye(10, 12, dtype=np.uint8) * 255)
    return ids


def _tree(root: Path, counts: dict[str, int]) -> None:
    for name, count in counts.items():
        for i in range(count):
            _save(root / name / f"{i}.png", np.full((8, 8), 7 * i, np.uint8))


def test_every_kind_is_listed() -> None:
    assert list_data_kinds() == sorted(
        [
            "csv",
            "image_folder",
            "medmnist",
            "nifti_folder",
            "segmentation_folder",
            "synthetic_classification",
            "synthetic_segmentation",
        ]
    )


@pytest.mark.data
def test_medmnist_kind(data_dir: Path) -> None:
    path = data_dir / "pneumoniamnist" / "pneumoniamnist.npz"
    splits = build_splits({"kind": "medmnist", "path": str(path), "max_train": 500, "seed": 1})
    assert isinstance(splits, DataSplits)
    assert (splits.task, splits.num_classes, splits.in_channels) == ("classification", 2, 1)
    assert (splits.spatial_dims, splits.image_size) == (2, (28, 28))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (500, 524, 624)
    # The subsample keeps the class ratio (1214 / 4708 of 500 = 128.9).
    assert labels_of(splits.train).bincount().tolist() == [129, 371]
    assert splits.summary()["test"] == {"n": 624, "class_counts": [234, 390]}


@pytest.mark.data
def test_kvasir_kind_uses_val_list_as_test(data_dir: Path) -> None:
    splits = build_splits(
        {"kind": "segmentation_folder", "path": str(data_dir / "kvasir-seg"), "image_size": 32}
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (160, 40, 120)
    assert not set(splits.train.ids) & set(splits.val.ids)
    official_val = (data_dir / "kvasir-seg" / "val.txt").read_text().split()
    assert splits.test.ids == official_val
    assert (splits.task, splits.num_classes, splits.in_channels) == ("segmentation", 2, 3)
    image, mask = splits.val[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


def test_segmentation_folder_layouts(tmp_path: Path) -> None:
    ids = _seg_folder(tmp_path, 20)
    spec = {"kind": "segmentation_folder", "path": str(tmp_path), "image_size": [8, 6]}
    no_lists = build_splits({**spec, "val_fraction": 0.25, "test_fraction": 0.25})
    parts = [set(d.ids) for d in (no_lists.train, no_lists.val, no_lists.test)]
    assert [len(p) for p in parts] == [10, 5, 5] and set().union(*parts) == set(ids)
    assert no_lists.image_size == (8, 6) and no_lists.train[0][1].shape == (8, 6)
    for name, chosen in (("train", ids[:12]), ("val", ids[12:16]), ("test", ids[16:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(chosen))
    listed = build_splits(spec)
    assert (listed.train.ids, listed.val.ids, listed.test.ids) == (ids[:12], ids[12:16], ids[16:])


def test_image_folder_kind(tmp_path: Path) -> None:
    _tree(tmp_path / "flat", {"a": 30, "b": 10})
    spec = {"kind": "image_folder", "path": str(tmp_path / "flat"), "image_size": 8}
    splits = build_splits({**spec, "val_fraction": 0.2, "test_fraction": 0.1, "grayscale": True})
    counts = [labels_of(d).bincount().tolist() for d in (splits.train, splits.val, splits.test)]
    assert counts == [[21, 7], [6, 2], [3, 1]]  # stratified
    assert splits.class_names == ("a", "b") and splits.in_channels == 1
    again = build_splits({**spec, "val_fraction": 0.2, "test_fraction": 0.1, "grayscale": True})
    assert again.val.indices == splits.val.indices
    _tree(tmp_path / "split" / "train", {"a": 8, "b": 4})
    _tree(tmp_path / "split" / "test", {"a": 2, "b": 2})
    split = build_splits({**spec, "path": str(tmp_path / "split"), "val_fraction": 0.25})
    assert (len(split.train), len(split.val), len(split.test)) == (9, 3, 4)
    _tree(tmp_path / "split" / "val", {"a": 1, "c": 1})
    with pytest.raises(DataError, match="every split needs the same class folders"):
        build_splits({**spec, "path": str(tmp_path / "split")})


def test_csv_kind(tmp_path: Path) -> None:
    _tree(tmp_path / "img", {"x": 10})
    rows = [f"img/x/{i}.png,{'mel' if i < 3 else 'nev'}" for i in range(10)]
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows))
    (tmp_path / "test.csv").write_text("path,label\nimg/x/0.png,nev\n")
    spec = {"kind": "csv", "path": str(tmp_path / "train.csv"), "image_size": 4}
    splits = build_splits({**spec, "test_path": str(tmp_path / "test.csv"), "val_fraction": 0.3})
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7, 3, 1)
    assert splits.class_names == ("mel", "nev")
    assert splits.test[0][1] == 1  # mapped with the training classes, not re-derived
    assert splits.train[0][0].shape == (3, 4, 4)


def test_synthetic_kinds() -> None:
    cls = build_splits(
        {"kind": "synthetic_classification", "n_train": 60, "n_val": 20, "n_test": 20}
    )
    assert (len(cls.train), len(cls.val), len(cls.test)) == (60, 20, 20)
    assert not torch.equal(cls.val.images, cls.test.images)  # distinct seeds per split
    assert cls.class_names == ("normal", "rare") and cls.train.class_counts().tolist() == [51, 9]
    same = build_splits(
        {"kind": "synthetic_classification", "n_train": 60, "n_val": 20, "n_test": 20}
    )
    assert torch.equal(cls.train.images, same.train.images)
    seg = build_splits(
        {
            "kind": "synthetic_segmentation",
            "n_train": 4,
            "n_val": 2,
            "n_test": 2,
            "image_size": 12,
            "spatial_dims": 3,
            "max_train": 3,
        }
    )
    assert (seg.task, seg.spatial_dims, seg.image_size, len(seg.train)) == (
        "segmentation",
        3,
        (12, 12, 12),
        3,
    )
    assert seg.summary()["train"] == {"n": 3}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"kind": "medmnst"}, "Unknown data kind 'medmnst'. Did you mean 'medmnist'?"),
        ({"kind": "synthetic_classification", "n_trian": 5}, "Did you mean 'data.n_train'\\?"),
        ({"kind": "medmnist"}, "data.path is required: a string"),
        (
            {"kind": "synthetic_classification", "max_train": 0},
            "data.max_train must be an integer >= 1 or null; got 0",
        ),
        (
            {"kind": "segmentation_folder", "path": ".", "val_fraction": 1.5},
            "data.val_fraction must be",
        ),
        ({"kind": "image_folder", "path": ".", "image_size": "big"}, "data.image_size"),
        ({"kind": "synthetic_classification", "n_val": -1}, "data.n_val must be an integer >= 1"),
        ({"path": "x"}, "needs a 'kind' key"),
        # every kind's keys are checked with the `data.` prefix (issue: `image_size must be ...`)
        (
            {"kind": "synthetic_classification", "image_size": "abc"},
            r"^data\.image_size must be an integer >= 8; got 'abc'\.$",
        ),
        (
            {"kind": "synthetic_segmentation", "spatial_dims": 4},
            r"data\.spatial_dims must be one of 2, 3; got 4",
        ),
        (
            {"kind": "nifti_folder", "path": ".", "normalise": "zscor"},
            r"data\.normalise must be one of 'zscore', 'minmax', 'none'; got 'zscor'\. "
            r"Did you mean 'zscore'\?",
        ),
        ({"kind": "nifti_folder", "path": ".", "cache": 1}, r"data\.cache must be true or false"),
        ({"kind": "csv", "path": ".", "label_column": 3}, r"data\.label_column must be a string"),
        ({"kind": "medmnist", "path": ".", "image_size": [0, 4]}, r"data\.image_size must be"),
        (
            {"kind": "image_folder", "path": ".", "image_size": [4, 4, 4]},
            r"^data\.image_size must be a positive int or 2 positive ints; got \[4, 4, 4\]",
        ),
    ],
)
def test_config_errors(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_splits(spec)


def test_data_keys_are_checked_when_the_config_is_read() -> None:
    """A bad ``data.*`` key fails in ``load_config`` (``medprune config``), before any data."""
    from medprune.config import load_config

    with pytest.raises(ConfigError, match=r"^data\.image_size must be an integer >= 8; got 'abc'"):
        load_config(None, {"data.image_size": "abc"})
    with pytest.raises(ConfigError, match=r"Unknown config key 'data\.n_trian'\. Did you mean"):
        load_config(None, {"data.n_trian": 5})
    assert load_config(None, {"data.n_train": 5}).data["n_train"] == 5


def test_missing_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MedMNIST file not found"):
        build_splits({"kind": "medmnist", "path": str(tmp_path / "none.npz")})


def test_resolve_data_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDPRUNE_DATA", str(tmp_path))
    assert resolve_data_path("$MEDPRUNE_DATA/a/b.npz") == tmp_path / "a" / "b.npz"
    assert resolve_data_path("${MEDPRUNE_DATA}/x") == tmp_path / "x"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_path("~/d") == tmp_path / "home" / "d"


def test_resolve_data_path_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDPRUNE_DATA", raising=False)
    checkout_data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if checkout_data.is_dir():
        assert resolve_data_path("$MEDPRUNE_DATA/x.npz") == checkout_data / "x.npz"
    else:
        with pytest.raises(ConfigError, match=r"uses \$MEDPRUNE_DATA, which is not set"):
            resolve_data_path("$MEDPRUNE_DATA/x.npz")


def test_subsets_pickle_with_their_attributes() -> None:
    splits = build_splits({"kind": "synthetic_classification", "n_train": 40, "max_train": 10})
    clone = pickle.loads(pickle.dumps(splits.train))
    assert clone.num_classes == 2 and torch.equal(clone.labels, splits.train.labels)
    assert torch.equal(clone[3][0], splits.train[3][0])
