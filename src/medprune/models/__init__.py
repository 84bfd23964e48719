"""Model registry: built-in paper architectures, ``tiny_*`` test models, MONAI networks and user
factories, all built with :func:`create_model`.

Example::

    from medprune.models import create_model, list_models
    model = create_model("resnet56", in_channels=1, num_classes=2)
    list_models("tiny_*")  # ['tiny_cnn', 'tiny_cnn_gap', ...]
"""

from __future__ import annotations

# Importing the model modules registers their names.
from medprune.models import (  # noqa: F401
    alexnet,
    resnet_cifar,
    small_resnet,
    tiny,
    tiny_blocks,
    tiny_seg,
    unet,
    vgg,
)
from medprune.models.inputs import example_input
from medprune.models.registry import MONAI_MODELS, create_model, list_models, register_model

__all__ = ["MONAI_MODELS", "create_model", "example_input", "list_models", "register_model"]
