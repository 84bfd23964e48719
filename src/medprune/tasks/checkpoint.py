"""Atomic checkpoints and the random-number-generator state that makes a resumed run exact.

A checkpoint is a plain ``dict`` saved with :func:`torch.save`. It is written to a temporary file in
the destination folder and moved into place with :func:`os.replace`, so an interrupted write (Ctrl-C,
a killed job) never leaves a half-written file under the final name: the previous checkpoint stays
readable. Checkpoints are read with ``torch.load(..., weights_only=True)``, so a payload may only
hold tensors, numbers, strings, ``None`` and lists / tuples / dicts of those. :func:`check_resume`
refuses to continue a training checkpoint under another recipe, seed or task.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medprune.errors import CheckpointError, ConfigError
from medprune.typing import PathLike

__all__ = [
    "capture_rng_state",
    "check_resume",
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


#: Task settings that only change how validation is scored, never what is trained.
_EVALUATION_ONLY = frozenset({"hd95", "spacing"})
#: Recipe settings that may differ on resume without changing the training (DDP bookkeeping).
_FREE_EXTRA = frozenset({"find_unused_parameters"})


def _changes(prefix: str, old: Mapping[str, Any], new: Mapping[str, Any], skip: Any) -> list[str]:
    return [
        f"{prefix}{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in skip and old.get(key) != new.get(key)
    ]


def check_resume(
    path: PathLike,
    saved: Mapping[str, Any],
    *,
    recipe: Mapping[str, Any],
    seed: int,
    task: Mapping[str, Any] | None = None,
    world_size: int | None = None,
) -> None:
    """Refuse to resume the training checkpoint ``saved`` under another recipe, seed, task or
    number of processes.

    ``recipe`` and ``task`` are the plain-data forms stored in the checkpoint (``asdict`` of the
    :class:`~medprune.tasks.recipe.TrainRecipe`, ``task.config()``). Every recipe field must match,
    except:

    * ``epochs`` may be raised (train longer) or lowered to no fewer than the finished epochs, when
      the scheduler is ``"none"`` or ``"step"``: their learning rate at epoch ``e`` does not depend
      on ``epochs``, so the continued run is exactly the run made with the new ``epochs``. With
      ``"cosine"`` (annealed to 0 over ``epochs``) the finished epochs followed another schedule,
      which the restored scheduler keeps following: refused.
    * ``extra["find_unused_parameters"]`` (DistributedDataParallel bookkeeping).

    Task settings that only change validation scores (``hd95``, ``spacing``) may differ too. A
    checkpoint without a stored recipe or seed (written before medprune stored them) is accepted
    with a logged warning.

    Args:
        path: the checkpoint file (for messages).
        saved: the loaded checkpoint payload (``epoch``, ``recipe``, ``seed``, ``task``).
        recipe: the recipe of the resuming run, as plain data.
        seed: the seed of the resuming run.
        task: the task configuration of the resuming run (None = not compared).
        world_size: processes of the resuming run (None = not compared). Each rank reads its
            own shard of every epoch, so another world size would continue with other batches.

    Raises:
        CheckpointError: a setting differs (each listed as ``field: old -> new``), or ``epochs``
            changed in a way the checkpoint cannot continue.
    """
    if "recipe" not in saved or "seed" not in saved:
        logger.warning(
            "checkpoint %s does not record its recipe and seed (written by an older medprune); "
            "resuming without checking that they match this run's",
            path,
        )
        return
    fix = (
        f"Delete {path} to train afresh with the new settings, or write to another output folder "
        "(--out / checkpoint_path) to keep both runs."
    )
    old_recipe, new_recipe = dict(saved["recipe"] or {}), dict(recipe)
    old_extra, new_extra = old_recipe.pop("extra", None) or {}, new_recipe.pop("extra", None) or {}
    changes = _changes("", old_recipe, new_recipe, {"epochs"})
    changes += _changes("extra.", old_extra, new_extra, _FREE_EXTRA)
    if saved["seed"] != seed:
        changes.append(f"seed: {saved['seed']!r} -> {seed!r}")
    old_world = saved.get("world_size")
    if world_size is not None and old_world is not None and old_world != world_size:
        changes.append(f"world_size (processes): {old_world!r} -> {world_size!r}")
    if task is not None and isinstance(saved.get("task"), Mapping):
        changes += _changes("task.", saved["task"], task, _EVALUATION_ONLY)
    old_epochs, new_epochs = old_recipe.get("epochs"), new_recipe.get("epochs")
    done = saved.get("epoch", 0)
    if changes:
        if old_epochs != new_epochs:
            changes.append(f"epochs: {old_epochs!r} -> {new_epochs!r}")
        raise CheckpointError(
            f"checkpoint {path} was written by a run with other training settings "
            f"({'; '.join(changes)}); resuming it would mix two different runs. {fix}"
        )
    if old_epochs == new_epochs:
        return
    if isinstance(new_epochs, int) and new_epochs < done:
        raise CheckpointError(
            f"checkpoint {path} already holds {done} finished epochs but epochs={new_epochs} "
            f"(was {old_epochs!r}). Set epochs >= {done} to continue it. {fix}"
        )
    if new_recipe.get("scheduler") == "cosine":
        raise CheckpointError(
            f"checkpoint {path} was written with epochs={old_epochs!r}, this run asks for "
            f"epochs={new_epochs!r}; the 'cosine' scheduler anneals the learning rate to 0 over "
            f"`epochs`, so the {done} finished epochs followed the old schedule and the new one "
            f"cannot continue them. Keep epochs={old_epochs!r} (with scheduler 'step' or 'none', "
            f"epochs may change on resume). {fix}"
        )
    logger.info(
        "resuming %s (epoch %d of %r) to train %r epochs", path, done, old_epochs, new_epochs
    )
