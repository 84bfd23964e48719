"""medprune.data: dataset readers, seeded synthetic data, class-balanced sampling, the data factory.

Items are ``(inputs, target)``: images float32 ``(C, *S)`` in [0, 1] (NIfTI volumes: z-scored by
default); classification labels int64 scalars, segmentation masks int64 ``(*S)``. See
``docs/architecture.md``.
"""

from __future__ import annotations

from medprune.data.arrays import ArrayDataset, load_medmnist
from medprune.data.image_files import CsvImageDataset, ImageFolderDataset
from medprune.data.nifti_folder import NiftiSegmentationFolder
from medprune.data.sampling import (
    ClassBalancedSampler,
    LabeledSubset,
    balanced_subset,
    calibration_loader,
    labels_of,
    random_subset,
)
from medprune.data.segmentation_folder import SegmentationFolder
from medprune.data.splits import (
    DataSplits,
    build_splits,
    check_data_spec,
    list_data_kinds,
    resolve_data_path,
)
from medprune.data.synthetic import make_synthetic_classification, make_synthetic_segmentation

__all__ = [
    "ArrayDataset",
    "ClassBalancedSampler",
    "CsvImageDataset",
    "DataSplits",
    "ImageFolderDataset",
    "LabeledSubset",
    "NiftiSegmentationFolder",
    "SegmentationFolder",
    "balanced_subset",
    "build_splits",
    "check_data_spec",
    "calibration_loader",
    "labels_of",
    "list_data_kinds",
    "load_medmnist",
    "make_synthetic_classification",
    "make_synthetic_segmentation",
    "random_subset",
    "resolve_data_path",
]
