"""Atomic checkpoints and the random-number-generator state that makes a resumed run exact.

A checkpoint is a plain ``dict`` saved with :func:`torch.save`. It is written to a temporary file in
the destination folder and moved into place with :func:`os.replace`, so an interrupted write (Ctrl-C,
a killed job) never leaves a half-written file under the final name: the previous checkpoint stays
readable. Checkpoints are read with ``torch.load(..., weights_only=True)``, so a payload may only
hold tensors, numbers, strings, ``None`` and lists / tuples / dicts of those.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medprune.errors import CheckpointError, ConfigError
from medprune.typing import PathLike

__all__ = [
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
]

logger = logging.getLogger(__name__)


def save_checkpoint(path: PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    Args:
        path: destination file; its parent folder is created when missing.
        payload: a dict of tensors, numbers, strings, None, and lists / tuples / dicts of those.

    Returns:
        The destination path.

    Raises:
        CheckpointError: the payload is not a dict or the file cannot be written.
    """
    path = Path(path)
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint payload must be a dict; got {type(payload).__name__} for {path}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CheckpointError(f"cannot create checkpoint folder {path.parent}: {e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as e:  # also KeyboardInterrupt: never leave the temporary file behind
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(e, Exception):
            raise CheckpointError(f"cannot write checkpoint {path}: {e}") from e
        raise
    return path


def load_checkpoint(
    path: PathLike,
    *,
    map_location: str | torch.device = "cpu",
    required_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``).

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded.
        required_keys: keys the payload must contain.

    Raises:
        CheckpointError: the file is missing, unreadable, not a dict, or lacks a required key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Train without resume=True first, or pass the path of "
            "an existing checkpoint."
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a medprune/PyTorch checkpoint "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Delete it and train again, or point to another file."
        ) from e
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(payload).__name__}, expected a dict payload."
        )
    missing = [k for k in required_keys if k not in payload]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks the keys {missing}; it holds {sorted(payload)}."
        )
    return payload


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and every CUDA device)."""
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0; got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The state of every global generator, in a form ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    return {
        "python": random.getstate(),
        "numpy": [
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`capture_rng_state` output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
