"""NIfTI image + label folders (3D segmentation) on tiny volumes generated with nibabel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medprune.cli.__main__ import main
from medprune.config import load_config
from medprune.data import NiftiSegmentationFolder, build_splits
from medprune.errors import ConfigError, DataError

nib = pytest.importorskip("nibabel")

SHAPE = (10, 12, 8)  # (D, H, W) as stored: deliberately not a cube


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def _volume(seed: int, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A float32 image with a bright box and its uint8 label (0 background, 1 box, 2 a corner)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:6, 3:8, 2:5] = 1
    label[0:2, 0:2, 0:2] = 2
    image[label == 1] += 50.0
    return image, label


def _folder(
    root: Path,
    n: int = 3,
    *,
    images: str = "imagesTr",
    labels: str = "labelsTr",
    suffix: str = ".nii.gz",
    shape: tuple[int, ...] = SHAPE,
) -> Path:
    for i in range(n):
        image, label = _volume(i, shape)
        _save(root / images / f"case_{i}{suffix}", image)
        _save(root / labels / f"case_{i}{suffix}", label)
    return root


def test_msd_layout_items_have_the_contract_shapes_dtypes_and_values(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    ds = NiftiSegmentationFolder(root, image_size=16)
    assert len(ds) == 3 and ds.ids == ["case_0", "case_1", "case_2"]
    assert (ds.in_channels, ds.spatial_dims, ds.num_classes) == (1, 3, 3)  # max label 2 -> 3
    assert ds.class_names == ("background", "class_1", "class_2") and ds.task == "segmentation"
    image, label = ds[1]
    assert image.shape == (1, 16, 16, 16) and image.dtype == torch.float32
    assert label.shape == (16, 16, 16) and label.dtype == torch.int64
    assert set(label.unique().tolist()) == {0, 1, 2}  # nearest keeps the class indices
    # stored size, no normalisation: exactly the voxels in the file, in the stored axis order
    raw = NiftiSegmentationFolder(root, normalise="none")
    image, label = raw[1]
    stored_image, stored_label = _volume(1)
    assert raw.image_size == SHAPE and image.shape == (1, *SHAPE)
    np.testing.assert_array_equal(image[0].numpy(), stored_image)
    np.testing.assert_array_equal(label.numpy(), stored_label)


def test_zscore_and_minmax_normalise_each_volume(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    image, _ = NiftiSegmentationFolder(root)[0]
    assert abs(float(image.mean())) < 1e-4 and abs(float(image.std(unbiased=False)) - 1) < 1e-3
    image, _ = NiftiSegmentationFolder(root, normalise="minmax")[0]
    assert float(image.min()) == 0.0 and float(image.max()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("labels", "suffix"), [("labels", ".nii"), ("masks", ".nii.gz"), ("labels", ".nii.gz")]
)
def test_images_plus_labels_or_masks_layouts(tmp_path: Path, labels: str, suffix: str) -> None:
    root = _folder(tmp_path, 2, images="images", labels=labels, suffix=suffix)
    _save(root / "images" / "._case_0.nii.gz", np.zeros(SHAPE, np.float32))  # macOS junk: skipped
    ds = NiftiSegmentationFolder(root, image_size=(8, 8, 8), normalise="none")
    assert ds.ids == ["case_0", "case_1"]
    assert ds[0][0].shape == (1, 8, 8, 8) and ds[0][1].shape == (8, 8, 8)


def test_nnunet_channel_files_become_channels(tmp_path: Path) -> None:
    for i in range(2):
        image, label = _volume(i)
        _save(tmp_path / "imagesTr" / f"pat{i}_0000.nii.gz", image)
        _save(tmp_path / "imagesTr" / f"pat{i}_0001.nii.gz", -image)
        _save(tmp_path / "labelsTr" / f"pat{i}.nii.gz", label)
    (tmp_path / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "box": 1, "corner": 2}})  # nnU-Net v2 form
    )
    ds = NiftiSegmentationFolder(tmp_path, normalise="none")
    assert ds.ids == ["pat0", "pat1"] and ds.in_channels == 2
    assert ds.class_names == ("background", "box", "corner") and ds.num_classes == 3
    image, _ = ds[1]
    assert image.shape == (2, *SHAPE)
    torch.testing.assert_close(image[1], -image[0])  # channel order follows _0000, _0001
    np.testing.assert_array_equal(image[0].numpy(), _volume(1)[0])


def test_4d_msd_image_is_channels_last_and_dataset_json_names_classes(tmp_path: Path) -> None:
    image, label = _volume(0)
    _save(tmp_path / "imagesTr" / "b.nii.gz", np.stack([image, 2 * image], axis=-1))  # (*S, 2)
    _save(tmp_path / "labelsTr" / "b.nii.gz", label)
    labels = {"0": "background", "1": "tumour", "2": "edema", "3": "other"}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}))  # MSD form
    ds = NiftiSegmentationFolder(tmp_path, normalise="none")
    assert ds.in_channels == 2 and ds.num_classes == 4 and ds.class_names[1] == "tumour"
    x, _ = ds[0]
    torch.testing.assert_close(x[1], 2 * x[0])


def test_crop_pad_centres_the_volume(tmp_path: Path) -> None:
    root = _folder(tmp_path, 1)
    ds = NiftiSegmentationFolder(root, image_size=(6, 16, 8), resize="crop_pad", normalise="none")
    image, label = ds[0]
    stored_image, stored_label = _volume(0)
    assert image.shape == (1, 6, 16, 8)
    # D 10 -> 6: centred crop drops 2 per side; H 12 -> 16: 2 zero rows per side; W unchanged
    np.testing.assert_array_equal(image[0, :, 2:14].numpy(), stored_image[2:8])
    assert float(image[0, :, :2].abs().sum()) == 0.0 and int(label[:, 14:].sum()) == 0
    np.testing.assert_array_equal(label[:, 2:14].numpy(), stored_label[2:8])


def test_cache_reuses_decoded_volumes_and_items_are_copies(tmp_path: Path) -> None:
    ds = NiftiSegmentationFolder(_folder(tmp_path, 2), image_size=8).preload()
    image, _ = ds[0]
    image.zero_()  # a caller editing its item must not edit the cache
    assert float(ds[0][0].abs().sum()) > 0
    assert int(ds.class_counts().sum()) == 2 * 8**3


def test_label_with_another_shape_names_both_files_and_shapes(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    _save(root / "labelsTr" / "case_1.nii.gz", np.zeros((10, 12, 9), np.uint8))
    with pytest.raises(DataError, match=r"labelsTr/case_1\.nii\.gz has shape \(10, 12, 9\).*imagesTr/case_1\.nii\.gz.*\(10, 12, 8\)"):  # fmt: skip
        NiftiSegmentationFolder(root)


def test_missing_label_names_the_image_and_expected_label(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    (root / "labelsTr" / "case_1.nii.gz").unlink()
    with pytest.raises(DataError, match=r"imagesTr/case_1\.nii\.gz has no label: expected .*labelsTr/case_1\.nii\.gz"):  # fmt: skip
        NiftiSegmentationFolder(root)


def test_empty_or_unrecognised_folders_name_the_expected_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Expected one of the layouts: .*imagesTr/ \+ .*labelsTr/"):
        NiftiSegmentationFolder(tmp_path)
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(DataError, match=r"imagesTr exists but its label folder does not"):
        NiftiSegmentationFolder(tmp_path)
    (tmp_path / "labelsTr").mkdir()
    with pytest.raises(DataError, match=r"imagesTr holds no NIfTI files \(\.nii or \.nii\.gz\)"):
        NiftiSegmentationFolder(tmp_path)


def test_corrupt_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    (root / "imagesTr" / "case_1.nii.gz").write_bytes(b"not a nifti file")
    with pytest.raises(DataError, match=r"cannot read .*imagesTr/case_1\.nii\.gz as NIfTI"):
        NiftiSegmentationFolder(root)


def test_bad_label_values_are_data_errors(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    with pytest.raises(
        DataError, match=r"case_0\.nii\.gz holds values 0\.\.2 but num_classes is 2"
    ):
        NiftiSegmentationFolder(root, num_classes=2)[0]
    _save(root / "labelsTr" / "case_1.nii.gz", np.full(SHAPE, 0.5, np.float32))
    with pytest.raises(
        DataError, match=r"case_1\.nii\.gz holds non-integer values \(e\.g\. 0\.5\)"
    ):
        NiftiSegmentationFolder(root)  # num_classes from the labels reads every label


def test_sizes_channels_and_options_are_checked(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    _save(root / "imagesTr" / "case_1.nii.gz", np.zeros((10, 12, 8, 2), np.float32))
    with pytest.raises(DataError, match=r"case_1\.nii\.gz has 2 channel\(s\) but .*case_0"):
        NiftiSegmentationFolder(root)
    root = _folder(tmp_path / "b", 1)
    _folder(tmp_path / "c", 1, shape=(8, 8, 8))
    (tmp_path / "c" / "imagesTr" / "case_0.nii.gz").rename(root / "imagesTr" / "case_9.nii.gz")
    (tmp_path / "c" / "labelsTr" / "case_0.nii.gz").rename(root / "labelsTr" / "case_9.nii.gz")
    with pytest.raises(DataError, match=r"need image_size"):
        NiftiSegmentationFolder(root)
    assert NiftiSegmentationFolder(root, image_size=8)[1][0].shape == (1, 8, 8, 8)
    with pytest.raises(
        ConfigError, match=r"normalise must be one of zscore, minmax, none; got 'z'"
    ):
        NiftiSegmentationFolder(root, normalise="z")
    with pytest.raises(DataError, match=r"case id\(s\) have no image .*'nope'"):
        NiftiSegmentationFolder(root, image_size=8, ids=["case_0.nii.gz", "nope"])
    with pytest.raises(ConfigError, match=r"num_classes must be an integer >= 2"):
        NiftiSegmentationFolder(root, num_classes=1)


def test_missing_nibabel_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medprune.data import _nifti_files

    real = _nifti_files.importlib.util.find_spec
    monkeypatch.setattr(
        _nifti_files.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "nibabel" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'medprune\[nifti\]'"):
        NiftiSegmentationFolder(_folder(tmp_path, 1))


def test_build_splits_nifti_folder(tmp_path: Path) -> None:
    root = _folder(tmp_path, 6)
    spec = {"kind": "nifti_folder", "path": str(root), "image_size": 8, "seed": 1}
    splits = build_splits(spec)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 1, 1)
    ids = splits.train.ids + splits.val.ids + splits.test.ids
    assert sorted(ids) == [f"case_{i}" for i in range(6)]  # disjoint, complete
    assert (splits.task, splits.spatial_dims, splits.image_size) == ("segmentation", 3, (8, 8, 8))
    assert splits.num_classes == 3 and splits.test.num_classes == 3
    assert build_splits(spec).val.ids == splits.val.ids  # seeded
    with pytest.raises(DataError, match=r"has 6 cases: val_fraction=0.05 .* leave the val split"):
        build_splits({**spec, "val_fraction": 0.05})
    for name, cases in (("train", [0, 1, 2]), ("val", [3]), ("test", [4, 5])):
        (root / f"{name}.txt").write_text("\n".join(f"case_{i}.nii.gz" for i in cases))
    listed = build_splits(spec)
    assert listed.val.ids == ["case_3"] and listed.test.ids == ["case_4", "case_5"]
    with pytest.raises(ConfigError, match=r"Did you mean 'data.normalise'"):
        build_splits({**spec, "normalize": "zscore"})
    with pytest.raises(ConfigError, match=r"data.image_size"):
        build_splits({**spec, "image_size": [8, 8]})


def test_auto_model_is_3d_for_nifti_data(tmp_path: Path) -> None:
    from medprune.pipeline import setup_run

    data = {"kind": "nifti_folder", "path": str(_folder(tmp_path, 5)), "image_size": 16}
    setup = setup_run(load_config(None, {"data": data, "model.name": "auto", "progress": False}))
    assert setup.model_name == "unet" and setup.model_kwargs["spatial_dims"] == 3
    assert setup.example_inputs.shape == (1, 1, 16, 16, 16)


def test_user_steps_train_then_prune_the_example_config(tmp_path: Path) -> None:
    """The example config's steps, pointed at a generated folder: train 1 epoch, then prune."""
    example = Path(__file__).resolve().parents[2] / "examples" / "nifti_3d_seg.yaml"
    config = yaml.safe_load(example.read_text())
    config["data"].update(path=str(_folder(tmp_path / "vols", 5)), image_size=[16, 16, 16])
    config["model"]["kwargs"] = {"base_channels": 4, "depth": 2}
    config["train"].update(epochs=1)
    config["prune"].update(calibration_size=2, finetune={"epochs": 1})
    config["measure"].update(repeats=1, warmup=0)
    config["out"] = str(tmp_path / "runs")
    path = tmp_path / "nifti.yaml"
    path.write_text(yaml.safe_dump(config))
    base = tmp_path / "base"
    assert main(["train", "--config", str(path), "--out", str(base), "--no-progress"]) == 0
    assert (base / "model.pt").is_file()
    out = tmp_path / "pruned"
    argv = ["prune", "--config", str(path), "--checkpoint", str(base / "model.pt"),
            "--criterion", "l1", "--target-macs", "0.5", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert 0.4 <= run["pruned"]["summary"]["macs_removed"] <= 0.6
    assert run["pruned"]["measurement"]["macs"] < run["base"]["measurement"]["macs"]
    assert "dice" in json.dumps(run["pruned"]["metrics"])


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("truncated", r"cannot decode label .*labelsTr/case_2\.nii\.gz: .*Re-export the file"),
        (
            "five",
            r"label .*case_2\.nii\.gz holds values 0\.\.5 but num_classes is 3 \(classes 0\.\.2\); "
            r"set data\.num_classes to at least 6",
        ),
        ("half", r"label .*case_2\.nii\.gz holds non-integer values \(e\.g\. 0\.5\)"),
    ],
)
def test_bad_labels_fail_when_the_dataset_is_opened(tmp_path: Path, bad: str, match: str) -> None:
    """A broken label file is found by build_splits, before a model or run folder exists."""
    root = _folder(tmp_path / "data", 3)
    label = root / "labelsTr" / "case_2.nii.gz"
    if bad == "truncated":
        data = label.read_bytes()
        label.write_bytes(data[:-12])  # the header decodes, the voxels do not
    else:
        values = np.zeros(SHAPE, np.float32)
        values[0, 0, 0] = 5.0 if bad == "five" else 0.5
        _save(label, values)
    spec = {"kind": "nifti_folder", "path": str(root), "image_size": 8, "num_classes": 3}
    with pytest.raises(DataError, match=match):
        build_splits(spec)
    with pytest.raises(DataError, match=match):
        NiftiSegmentationFolder(root, num_classes=3, progress=False)


def test_labels_are_checked_once_with_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medprune.data import nifti_folder

    seen: list[tuple[str, int]] = []
    real = nifti_folder.progress_bar

    def spy(iterable: list, **kwargs: object) -> object:
        seen.append((str(kwargs["desc"]), len(iterable)))
        return real(iterable, **kwargs)

    monkeypatch.setattr(nifti_folder, "progress_bar", spy)
    root = _folder(tmp_path / "data", 5)
    build_splits({"kind": "nifti_folder", "path": str(root), "image_size": 8})
    assert seen == [("checking labels in data", 5)]  # all cases, once (not again per split)
