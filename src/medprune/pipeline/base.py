"""The base model of a run: trained once into ``out/base/`` and reused by every rerun, or
loaded from a checkpoint the user gives.

``out/base/base_config.json`` records the settings the base model was trained with (seed, data,
model, task, train). A rerun into the same folder with other settings is refused instead of
silently pruning the old model.

A run moved out of a taken folder (``<out>/prune-l1-0.3``, ``<out>/compare``, see
:mod:`medprune.pipeline.folders`) reuses the base model of the run it was moved away from when
its settings match: ``<out>/base/model.pt`` of a prune / compare run, or ``<out>/model.pt`` of a
``medprune train`` run (its ``config.resolved.yaml`` holds the settings).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from medprune.errors import CheckpointError, ConfigError
from medprune.pipeline.files import load_model, save_model, write_json
from medprune.pipeline.folders import read_json_dict, run_verb
from medprune.pipeline.setup import RunSetup, build_model, train_model
from medprune.typing import PathLike

__all__ = ["BASE_STAMP", "base_fingerprint", "obtain_base"]

log = logging.getLogger(__name__)

#: The config sections a base model depends on (those :func:`base_fingerprint` records).
BASE_SECTIONS = ("seed", "data", "model", "task", "train")


def obtain_base(
    setup: RunSetup,
    out_dir: PathLike,
    *,
    checkpoint: PathLike | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The base model: loaded from ``checkpoint``, or from ``out_dir/base/model.pt`` of an earlier
    (interrupted) run, or from the run ``out_dir`` sits in when its settings match (its
    ``base/model.pt``, or the ``model.pt`` of a ``medprune train`` run), or trained now and saved
    to ``out_dir/base/``. Returns ``(model, info)`` where ``info`` has ``source`` and
    ``train_time_s``. ``say`` (default: logging) hears which base the run uses and, when a train
    run beside it has other settings, why it is retrained."""
    say = say or log.info
    base_path = Path(out_dir) / "base" / "model.pt"
    if checkpoint is not None:
        model, _ = load_model(
            checkpoint, fallback_name=setup.model_name, fallback_kwargs=setup.model_kwargs
        )
        return model, {"source": str(checkpoint), "train_time_s": 0.0}
    stamp_path = base_path.with_name(BASE_STAMP)
    stamp = base_fingerprint(setup)
    if base_path.is_file():
        _check_base_stamp(stamp_path, stamp)
        model, _ = load_model(base_path)
        return model, {"source": str(base_path), "train_time_s": 0.0}
    beside = _matching_base_beside(Path(out_dir), stamp)
    if beside is not None:  # a run moved to <out>/prune-... reuses <out>/base when it matches
        log.info("reusing the base model %s (trained with the same settings)", beside)
        model, _ = load_model(beside)
        return model, {"source": str(beside), "train_time_s": 0.0}
    trained = _train_run_beside(Path(out_dir), setup, say)
    if trained is not None:  # a run moved to <out>/prune-... next to `medprune train`'s model
        model, _ = load_model(trained)
        return model, {"source": str(trained), "train_time_s": 0.0}
    model = build_model(setup)
    t0 = time.perf_counter()
    history = train_model(setup, model, checkpoint_path=Path(out_dir) / "base" / "train_state.pt")
    elapsed = time.perf_counter() - t0
    save_model(base_path, model, setup)
    write_json(stamp_path, stamp)
    return model, {"source": "trained", "train_time_s": elapsed, "history": history}


#: Written beside ``base/model.pt``: the settings the base model was trained with.
BASE_STAMP = "base_config.json"


def base_fingerprint(setup: RunSetup) -> dict[str, Any]:
    """The config sections a trained base model depends on (:data:`BASE_SECTIONS`), the model
    as built (name and keyword arguments after completion from the data)."""
    from medprune.config import config_to_dict

    config = config_to_dict(setup.config)
    stamp = {k: config.get(k) for k in BASE_SECTIONS}
    stamp["model"] = {"name": setup.model_name, "kwargs": setup.model_kwargs}
    return json.loads(json.dumps(stamp, default=str))


def _matching_base_beside(out_dir: Path, stamp: dict[str, Any]) -> Path | None:
    """``<parent>/base/model.pt`` when its stamp equals ``stamp`` exactly (else None): the base of
    the run whose folder this one was moved out of (:func:`medprune.pipeline.folders.choose_out_dir`)."""
    path = out_dir.parent / "base" / "model.pt"
    saved = read_json_dict(path.with_name(BASE_STAMP)) if path.is_file() else None
    return path if saved == stamp else None


def _train_run_beside(out_dir: Path, setup: RunSetup, say: Callable[[str], None]) -> Path | None:
    """``<parent>/model.pt`` when ``<parent>`` holds a finished ``medprune train`` run with the
    same seed, data, model, task and train settings as ``setup`` (else None, saying why when the
    settings differ)."""
    from medprune.config import config_to_dict, load_config

    parent = out_dir.parent
    path = parent / "model.pt"
    run = read_json_dict(parent / "run.json")
    if not (path.is_file() and run and run_verb(run) == "train"):
        return None
    try:
        theirs = config_to_dict(load_config(parent / "config.resolved.yaml"))
    except (ConfigError, OSError, ValueError) as e:
        say(f"retraining: the config of the train run in {parent} is unreadable ({e}); pass "
            f"--checkpoint {path} to use its model anyway")  # fmt: skip
        return None
    ours = config_to_dict(setup.config)
    changes = _differences(
        {k: theirs.get(k) for k in BASE_SECTIONS}, {k: ours.get(k) for k in BASE_SECTIONS}
    )
    if changes:
        say(f"retraining: the train run in {parent} has other settings ({'; '.join(changes)}); "
            f"pass --checkpoint {path} to use it anyway")  # fmt: skip
        return None
    say(f"using the base model of the train run in {parent} ({path.name})")
    return path


def _differences(old: Any, new: Any, key: str = "", limit: int = 3) -> list[str]:
    """``["train.lr: 0.01 -> 0.5", ...]``: the dotted keys whose values differ (at most
    ``limit``)."""
    old, new = json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str))
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{key}.{k}" if key else str(k)
            if k not in old or k not in new:
                before = json.dumps(old[k]) if k in old else "(unset)"
                after = json.dumps(new[k]) if k in new else "(unset)"
                out.append(f"{sub}: {before} -> {after}")
            else:
                out += _differences(old[k], new[k], sub, limit)
        return out[:limit]
    return [] if old == new else [f"{key}: {json.dumps(old)} -> {json.dumps(new)}"]


def _check_base_stamp(path: Path, stamp: dict[str, Any]) -> None:
    """Refuse to reuse a base model trained with other settings (no stamp: an older run, kept)."""
    if not path.is_file():
        log.warning("%s has no %s; reusing the base model without checking its settings.",
                    path.parent, BASE_STAMP)  # fmt: skip
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is unreadable ({e}); delete {path.parent} to train the base model again."
        ) from e
    differ = [k for k in stamp if saved.get(k) != stamp[k]]
    if differ:
        raise ConfigError(
            f"{path.parent / 'model.pt'} was trained with other {', '.join(differ)} settings "
            f"than this run asks for. Use another --out, pass --checkpoint to prune a model "
            f"you trained, or delete {path.parent} to train the base model again."
        )
