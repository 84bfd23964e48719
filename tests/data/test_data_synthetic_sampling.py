"""Synthetic data (determinism, imbalance, a subtle but real signal) and class-balanced sampling."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Subset

from medprune.data import (
    ArrayDataset,
    ClassBalancedSampler,
    balanced_subset,
    calibration_loader,
    labels_of,
    make_synthetic_classification,
    make_synthetic_segmentation,
)
from medprune.errors import ConfigError, DataError


def test_synthetic_classification_is_seeded_and_imbalanced() -> None:
    a = make_synthetic_classification(200, seed=3)
    b = make_synthetic_classification(200, seed=3)
    c = make_synthetic_classification(200, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.class_counts().tolist() == [170, 30]  # round(200 * 0.15) rare images
    assert a.images.shape == (200, 1, 32, 32) and a.images.dtype == torch.float32
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0
    assert a.class_names == ("normal", "rare") and (a.in_channels, a.num_classes) == (1, 2)
    assert 0 < a.labels[:100].sum() < 30  # shuffled, not sorted by class


def test_synthetic_rare_class_is_subtle_but_detectable() -> None:
    ds = make_synthetic_classification(400, seed=0)
    rare = ds.labels == 1
    # Subtle: the global brightness does not give the class away.
    mean = ds.images.mean(dim=(1, 2, 3))
    assert roc_auc_score(rare.numpy(), mean.numpy()) < 0.75
    # Real: a blob-shaped matched filter (Gaussian minus local mean) does find it.
    grid = torch.arange(9.0) - 4
    g = torch.exp(-(grid[:, None] ** 2 + grid[None] ** 2) / (2 * 1.5**2))
    kernel = (g / g.sum() - 1 / 81).view(1, 1, 9, 9)
    response = F.conv2d(ds.images, kernel).amax(dim=(1, 2, 3))
    assert roc_auc_score(rare.numpy(), response.numpy()) > 0.75


def test_synthetic_classification_options() -> None:
    ds = make_synthetic_classification(90, image_size=16, in_channels=3, num_classes=4, seed=1)
    assert ds.images.shape == (90, 3, 16, 16)
    assert ds.class_counts().tolist() == [26, 25, 25, 14]
    assert ds.class_names[-1] == "rare"
    with pytest.raises(ConfigError, match=r"minority_fraction must be in \(0, 1\); got 1.5"):
        make_synthetic_classification(10, minority_fraction=1.5)
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2"):
        make_synthetic_classification(10, num_classes=1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_synthetic_segmentation(spatial_dims: int) -> None:
    size = 32 if spatial_dims == 2 else 16
    ds = make_synthetic_segmentation(12, image_size=size, spatial_dims=spatial_dims, seed=5)
    again = make_synthetic_segmentation(12, image_size=size, spatial_dims=spatial_dims, seed=5)
    assert torch.equal(ds.images, again.images) and torch.equal(ds.targets, again.targets)
    assert ds.labels is None and ds.task == "segmentation" and ds.spatial_dims == spatial_dims
    image, mask = ds[0]
    assert image.shape == (1, *([size] * spatial_dims)) and mask.shape == (size,) * spatial_dims
    assert mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 1}
    fg = ds.targets.bool()
    assert 0.02 < fg.float().mean() < 0.6
    assert ds.images[:, 0][fg].mean() > ds.images[:, 0][~fg].mean() + 0.05


def test_sampler_draws_classes_equally() -> None:
    labels = torch.tensor([0] * 900 + [1] * 80 + [2] * 20)
    sampler = ClassBalancedSampler(labels, num_samples=6000, seed=0)
    first = list(sampler)
    counts = torch.bincount(labels[first], minlength=3).double()
    chi2 = ((counts - 2000) ** 2 / 2000).sum()
    assert len(first) == 6000 and chi2 < 13.8  # p = 0.001 for 2 degrees of freedom
    assert list(sampler) != first  # a new draw each epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # reproducible per epoch
    ds = ArrayDataset(torch.zeros(1000, 1, 2, 2), labels, num_classes=3)
    assert len(ClassBalancedSampler(ds)) == 1000
    batch = next(iter(DataLoader(ds, batch_size=300, sampler=ClassBalancedSampler(ds))))
    assert batch[1].bincount().min() > 60


def test_sampler_rejects_bad_labels() -> None:
    with pytest.raises(DataError, match="empty"):
        ClassBalancedSampler([])
    with pytest.raises(DataError, match="integer class indices"):
        ClassBalancedSampler(torch.tensor([0.0, 1.0]))
    with pytest.raises(DataError, match="has no class labels"):
        ClassBalancedSampler(make_synthetic_segmentation(2, image_size=8))
    with pytest.raises(ConfigError, match="num_samples must be"):
        ClassBalancedSampler([0, 1], num_samples=0)


def test_balanced_subset_counts() -> None:
    labels = torch.tensor([0] * 50 + [1] * 7 + [2] * 30)
    ds = ArrayDataset(torch.zeros(87, 1, 2, 2), labels, num_classes=3)
    sub = balanced_subset(ds, 21, seed=1)
    assert len(set(sub.indices)) == 21 and sub.class_counts().tolist() == [7, 7, 7]
    assert balanced_subset(ds, 30).class_counts().tolist() == [12, 7, 11]
    sub = balanced_subset(ds, 40, seed=1)
    assert sub.class_counts().tolist() == [17, 7, 16]  # class 1 gives all 7, the rest is spread
    assert sub.num_classes == 3 and sub.in_channels == 1
    assert balanced_subset(ds, 40, seed=1).indices == sub.indices
    assert balanced_subset(ds, 40, seed=2).indices != sub.indices
    nested = balanced_subset(Subset(ds, list(range(60))), 20)
    assert labels_of(nested).bincount().tolist() == [10, 7, 3]  # classes 1, 2 give all
    with pytest.warns(UserWarning, match="asked for 100 images but the dataset holds 87"):
        assert len(balanced_subset(ds, 100)) == 87
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        balanced_subset(ds, 0)


def test_calibration_loader() -> None:
    ds = make_synthetic_classification(200, seed=0)
    loader = calibration_loader(ds, 32, batch_size=8, seed=0)
    batches = list(loader)
    assert len(batches) == 4 and batches[0][0].shape == (8, 1, 32, 32)
    targets = torch.cat([b[1] for b in batches])
    assert targets.bincount().tolist() == [16, 16]
    assert torch.equal(torch.cat([b[1] for b in loader]), targets)  # same batches every pass
    seg = make_synthetic_segmentation(10, image_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = next(iter(calibration_loader(seg, 4, batch_size=4)))[1]
    assert masks.shape == (4, 8, 8)
    unbalanced = calibration_loader(ds, 40, balanced=False, seed=0)
    assert len(unbalanced.dataset) == 40
