"""Type aliases shared across medprune."""

from __future__ import annotations

import os
from typing import Literal, Union

import torch

SpatialDims = Literal[2, 3]
Shape = tuple[int, ...]
PathLike = Union[str, "os.PathLike[str]"]  # noqa: UP007 (a string forward reference)
ExampleInputs = torch.Tensor | tuple[torch.Tensor, ...]
