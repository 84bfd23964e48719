"""Resumable training phases: one checkpoint file per phase under ``MethodContext.checkpoint_dir``.

A method's training runs in named *phases* (``"sfp"``, ``"sauron"``, ``"finetune_step1_attempt0"``,
``"lottery_round2_attempt0"``...). With a ``checkpoint_dir``, :func:`medprune.methods._training.fit`
gives each phase the file ``<checkpoint_dir>/<phase>.pt``, written atomically after every epoch by
:func:`medprune.tasks.train`, and resumes from it when it exists:

* a finished phase is not retrained (``train`` restores the last epoch and returns at once);
* an interrupted phase continues from its last finished epoch, bit for bit on CPU.

Everything a method computes *between* phases (the channels pruned at step ``k``, the lottery
masks of round ``r``, a guard's verdict) is a deterministic function of the seed and the weights at
the end of the earlier phases, which their files restore exactly: it is recomputed, not stored.
What a phase's callbacks learn while training (Sauron's removals, SFP's selection, MFP's choices,
the lottery rewind snapshot) travels in the phase file through their ``state_dict``.

Only CPU runs are bit-exact: on a GPU, non-deterministic kernels can make a recomputed plan differ
from the interrupted run's; its phase then starts from other weights and is retrained (below).

Each file carries a :class:`PhaseStamp` (the first callback state): a fingerprint of the phase's
configuration (phase name, method options, recipe, seed, task) and a digest of the weights the phase
started from. Before resuming, :func:`resume_phase` compares it with the current phase:

* another configuration -> :class:`~medprune.errors.CheckpointError` (the folder belongs to another
  run: delete it or use another ``checkpoint_dir``);
* the same configuration from other starting weights (another base model, or an earlier phase that
  took another path) -> the stale file is deleted and the phase trains afresh, with a warning.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import CheckpointError, ConfigError
from medprune.tasks.callbacks import TrainCallback
from medprune.tasks.checkpoint import load_checkpoint

__all__ = ["PhaseStamp", "describe", "phase_path", "resume_phase", "weights_digest"]

logger = logging.getLogger(__name__)
STAMP_FORMAT = "medprune.phase/1"
_PHASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def describe(obj: Any) -> Any:
    """``obj`` as plain JSON data that is stable across processes (for fingerprints).

    Dicts, lists, numbers and strings are kept; dataclasses become dicts; tensors become lists
    (small) or a digest; other objects their class path plus a ``name`` attribute when present
    (never ``repr``, which may hold a memory address).
    """
    if isinstance(obj, Mapping):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [describe(v) for v in obj]
        return sorted(items, key=json.dumps) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return describe(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if torch.is_tensor(obj):
        t = obj.detach().cpu()
        return t.tolist() if t.numel() <= 64 else {"tensor": _tensor_digest(t)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"class": _class_path(obj), **describe(dataclasses.asdict(obj))}
    name = getattr(obj, "name", None)
    return {"class": _class_path(obj), "name": name if isinstance(name, str) else None}


def _class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _tensor_digest(t: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    _update(h, "", t)
    return h.hexdigest()


def _update(h: Any, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def weights_digest(model: nn.Module) -> str:
    """Digest of every parameter and buffer of ``model`` (names, dtypes, shapes and values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        _update(h, name, t)
    return h.hexdigest()


def phase_path(checkpoint_dir: str | Path, phase: str) -> Path:
    """``<checkpoint_dir>/<phase>.pt``; ConfigError for a name that is not a plain file stem."""
    if not isinstance(phase, str) or not _PHASE_NAME.match(phase):
        raise ConfigError(
            f"phase names must be plain file stems (letters, digits, '_', '.', '-'); got {phase!r}."
        )
    return Path(checkpoint_dir) / f"{phase}.pt"


class PhaseStamp(TrainCallback):
    """The first callback of a checkpointed phase: stores the phase fingerprint in every checkpoint.

    Args:
        phase: the phase name.
        config: plain description of what the phase computes (see :func:`describe`).
        start: :func:`weights_digest` of the model the phase starts from.
    """

    def __init__(self, phase: str, config: Mapping[str, Any], start: str) -> None:
        self.phase = phase
        self.config = json.dumps(describe(config), sort_keys=True)
        self.start = start

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STAMP_FORMAT,
            "phase": self.phase,
            "config": self.config,
            "start": self.start,
        }


def _differences(old: str, new: str) -> list[str]:
    """Top-level (and ``options``) keys whose values differ between two fingerprint configs."""
    a, b = json.loads(old), json.loads(new)
    keys = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        sub_a, sub_b = a.get(key), b.get(key)
        if isinstance(sub_a, dict) and isinstance(sub_b, dict):
            keys += [
                f"{key}.{k}"
                for k in sorted(set(sub_a) | set(sub_b))
                if sub_a.get(k) != sub_b.get(k)
            ]
        else:
            keys.append(key)
    return keys


def resume_phase(path: Path, stamp: PhaseStamp) -> bool:
    """Whether ``path`` continues the phase of ``stamp`` (False: no file, or a stale one, deleted).

    Raises:
        CheckpointError: ``path`` is unreadable, was not written by a method phase, or belongs to
            a phase with another configuration.
    """
    if not path.is_file():
        return False
    saved_cbs = load_checkpoint(path, required_keys=("callbacks",))["callbacks"] or [{}]
    saved = saved_cbs[0] if isinstance(saved_cbs[0], dict) else {}
    fix = (
        f"Delete {path.parent} (or just {path.name}) to train this phase afresh, or pass another "
        "checkpoint_dir."
    )
    if saved.get("format") != STAMP_FORMAT:
        raise CheckpointError(
            f"{path} is a training checkpoint but not one of a pruning-method phase (no "
            f"{STAMP_FORMAT!r} stamp). {fix}"
        )
    if saved.get("phase") != stamp.phase or saved.get("config") != stamp.config:
        diff = _differences(str(saved.get("config") or "{}"), stamp.config)
        raise CheckpointError(
            f"{path} was written by phase {saved.get('phase')!r} of another configuration "
            f"(differs in: {', '.join(diff) or 'phase name'}); it cannot resume phase "
            f"{stamp.phase!r} of this run. {fix}"
        )
    if saved.get("start") != stamp.start:
        logger.warning(
            "%s was written by a run of phase %r that started from other weights (another base "
            "model, or an earlier phase took another path); deleting it and training the phase "
            "afresh.",
            path,
            stamp.phase,
        )
        path.unlink(missing_ok=True)
        return False
    return True
