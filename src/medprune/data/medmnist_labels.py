"""Class names of the MedMNIST sets, so reports say "pneumonia" instead of "1".

The label maps are those of the official MedMNIST ``INFO`` table (``medmnist/info.py``, v2 / v3);
the ``.npz`` files themselves hold only integer labels. ChestMNIST (multi-label) and RetinaMNIST
(ordinal grades "0".."4") are left out: the first is not a single-label task, the second has no
names beyond the numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

from medprune.typing import PathLike

_ORGANS_2D = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
    "lung-left", "lung-right", "pancreas", "spleen",
)  # fmt: skip

MEDMNIST_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "pathmnist": (
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
        "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium",
    ),
    "dermamnist": (
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
        "vascular lesions",
    ),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": (
        "basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil",
        "platelet",
    ),
    "tissuemnist": (
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
        "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
        "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb",
    ),
    "organamnist": _ORGANS_2D,
    "organcmnist": _ORGANS_2D,
    "organsmnist": _ORGANS_2D,
    "organmnist3d": (
        "liver", "kidney-right", "kidney-left", "femur-right", "femur-left", "bladder", "heart",
        "lung-right", "lung-left", "spleen", "pancreas",
    ),
    "nodulemnist3d": ("benign", "malignant"),
    "adrenalmnist3d": ("normal", "hyperplasia"),
    "fracturemnist3d": (
        "buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture",
    ),
    "vesselmnist3d": ("vessel", "aneurysm"),
    "synapsemnist3d": ("inhibitory synapse", "excitatory synapse"),
}  # fmt: skip


def medmnist_class_names(path: PathLike, num_classes: int) -> tuple[str, ...] | None:
    """The official class names of the MedMNIST file at ``path``, or None if unknown.

    The set is recognised by the file name: ``pneumoniamnist.npz`` and the MedMNIST+ sizes
    ``pneumoniamnist_64.npz`` / ``_128`` / ``_224`` all give ``("normal", "pneumonia")``. None when
    the name is not a MedMNIST set or its table has another number of classes than
    ``num_classes`` (a relabelled file).
    """
    stem = re.sub(r"_\d+$", "", Path(path).stem.lower())
    names = MEDMNIST_CLASS_NAMES.get(stem)
    return names if names is not None and len(names) == num_classes else None
