"""Run folders that never overwrite another run's finished artefacts.

A folder is *taken* when it holds a finished artefact (``model.pt`` of ``medprune train`` /
``prune``, ``results.jsonl`` of ``medprune compare``) of a run other than the one about to
start. A run is identified by its verb, its resolved config (``out`` and ``progress`` aside) and,
for ``prune``, the ``--checkpoint`` it pruned; the same run may always rerun in its folder, which
is how an interrupted run continues.

:func:`choose_out_dir` applies the rule: an explicit ``--out`` that is taken is refused (unless
``overwrite``); without ``--out``, a taken ``config.out`` makes the run go to the first free
folder of :func:`candidates` instead (``<out>/prune-<name>-<amount>``, ``<out>-2``, ...), with a
message saying where and why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medprune.config import RunConfig
from medprune.errors import ConfigError
from medprune.typing import PathLike

__all__ = ["candidates", "choose_out_dir", "run_identity", "taken_by"]

log = logging.getLogger(__name__)

#: Files that make a folder a finished run, per verb that writes them.
ARTEFACTS = {"model.pt": ("train", "prune"), "results.jsonl": ("compare",)}
_IGNORED_KEYS = ("out", "progress")
_MAX_CANDIDATES = 100


def run_identity(
    config: RunConfig, verb: str, checkpoint: PathLike | None = None
) -> dict[str, Any]:
    """What makes two runs the same: the verb, the resolved config without ``out`` /
    ``progress``, and the checkpoint pruned (as JSON-plain data)."""
    from medprune.config import config_to_dict

    plain = {k: v for k, v in config_to_dict(config).items() if k not in _IGNORED_KEYS}
    ident = {"verb": verb, "config": plain, "checkpoint": _path_text(checkpoint)}
    return json.loads(json.dumps(ident, default=str, sort_keys=True))  # type: ignore[no-any-return]


def taken_by(out_dir: PathLike, identity: dict[str, Any]) -> str | None:
    """Why ``out_dir`` may not receive the run ``identity``: a description of the other run's
    finished artefacts there, or None when the folder is free or already that run's."""
    out_dir = Path(out_dir)
    artefacts = [name for name in ARTEFACTS if _finished(out_dir / name)]
    if not artefacts:
        return None
    stored = _stored_identity(out_dir)
    if stored is not None and stored["verb"] == identity["verb"] == "compare":
        return None  # compare checks its own resume (the grid may grow)
    if stored == identity:
        return None
    what = f"the finished {stored['verb']} run" if stored and stored["verb"] else "a run"
    if stored and stored["verb"] == identity["verb"]:
        what += " of another configuration"
    return f"{what} ({', '.join(artefacts)})"


def candidates(out_dir: PathLike, verb: str, stem: str | None = None) -> Iterator[Path]:
    """The folders tried, in order, when ``out_dir`` is taken: ``out_dir/<stem>``,
    ``out_dir/<stem>-2``, ... for ``prune`` and ``compare`` (beside the run they follow),
    ``<out_dir>-2``, ``<out_dir>-3``, ... for ``train``."""
    out_dir = Path(out_dir)
    for i in range(1, _MAX_CANDIDATES + 1):
        if verb == "train" or not stem:
            if i > 1:
                yield out_dir.with_name(f"{out_dir.name}-{i}")
        else:
            yield out_dir / (stem if i == 1 else f"{stem}-{i}")


def choose_out_dir(
    config: RunConfig,
    *,
    verb: str,
    out: PathLike | None,
    overwrite: bool = False,
    checkpoint: PathLike | None = None,
    stem: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Path:
    """The folder run ``verb`` of ``config`` writes into.

    Args:
        config: the run config (``config.out`` is the default folder).
        verb: ``"train"``, ``"prune"`` or ``"compare"``.
        out: the folder the user asked for (``--out``), None for ``config.out``.
        overwrite: write into a taken folder anyway (``--overwrite``).
        checkpoint: the model file ``prune`` / ``compare`` start from (part of the run's
            identity; it is never overwritten, not even with ``overwrite``).
        stem: name of the new folders of :func:`candidates` (``prune-l1-0.5``).
        say: where the message about a new folder goes (default: a logging warning).

    Raises:
        ConfigError: an explicit ``out`` that is taken (without ``overwrite``), a run that would
            overwrite its own ``checkpoint``, or no free folder among the candidates.
    """
    identity = run_identity(config, verb, checkpoint)
    wanted = Path(out if out is not None else config.out)
    why = taken_by(wanted, identity)
    if why is None or overwrite:
        _check_not_the_checkpoint(wanted, verb, checkpoint)
        if why is not None:
            log.warning("%s holds %s; overwriting it (--overwrite).", wanted, why)
        return wanted
    if out is not None:
        raise ConfigError(
            f"--out {wanted} already holds {why}; medprune {verb} would overwrite it. Give "
            f"another --out folder, or pass --overwrite to replace it."
        )
    for folder in candidates(wanted, verb, stem):
        if _free_for(folder, identity):
            (say or log.warning)(_moved_message(wanted, why, folder, verb))
            return folder
    raise ConfigError(
        f"{wanted} holds {why} and the folders medprune {verb} tries instead are taken too; "
        f"give a free folder with --out."
    )


def _moved_message(wanted: Path, why: str, folder: Path, verb: str) -> str:
    """Where the run goes instead of ``wanted``: a new folder, or the folder an earlier run of
    the same command went to (continued when interrupted, rerun there when finished)."""
    head = f"{wanted} holds {why}; "
    tail = " (--out DIR picks the folder, --overwrite replaces the old run)."
    if not _has_run(folder):
        return f"{head}writing this {verb} run to {folder} instead so as not to overwrite it{tail}"
    finished = [name for name in ARTEFACTS if _finished(folder / name)]
    if verb == "compare":
        return f"{head}continuing this comparison in {folder} (its finished cells are kept){tail}"
    if finished:
        state = (
            f"reusing {folder}, which holds this same {verb} run, finished ({', '.join(finished)})"
        )
        return f"{head}{state}: it runs again there{tail}"
    return f"{head}continuing this {verb} run in {folder}, where it was interrupted{tail}"


def _has_run(folder: Path) -> bool:
    return folder.is_dir() and (folder / "run.json").is_file()


def _free_for(folder: Path, identity: dict[str, Any]) -> bool:
    """A new folder is used when empty, or when it holds this same run (finished or not)."""
    if not folder.exists():
        return True
    if folder.is_dir() and not any(folder.iterdir()):
        return True
    if not folder.is_dir():
        return False
    stored = _stored_identity(folder)
    if stored is not None and stored["verb"] == identity["verb"] == "compare":
        return True  # compare checks its own resume (the grid may grow)
    return stored == identity


def _check_not_the_checkpoint(folder: Path, verb: str, checkpoint: PathLike | None) -> None:
    if checkpoint is None or verb not in ARTEFACTS["model.pt"]:
        return
    target = folder / "model.pt"
    if target.exists() and Path(checkpoint).exists() and target.samefile(checkpoint):
        raise ConfigError(
            f"--checkpoint {checkpoint} is the model.pt medprune {verb} would write into "
            f"{folder}; give another --out folder."
        )


def _finished(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _path_text(path: PathLike | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _stored_identity(folder: Path) -> dict[str, Any] | None:
    """The identity of the run in ``folder`` (None when unreadable or not a medprune run)."""
    from medprune.config import load_config

    run = read_json_dict(folder / "run.json")
    verb = run_verb(run) if run else None
    if verb is None and run is None and (folder / "results.jsonl").is_file():
        verb = "compare"
    resolved = folder / "config.resolved.yaml"
    if verb is None or not resolved.is_file():
        return None
    try:
        config = load_config(resolved)
    except (ConfigError, OSError, ValueError) as e:
        log.debug("cannot read %s: %s", resolved, e)
        return None
    checkpoint = run.get("checkpoint") if run else None
    return run_identity(config, verb, checkpoint)


def run_verb(run: dict[str, Any]) -> str | None:
    """The verb (``"train"``, ``"prune"``, ``"compare"``) of a ``run.json`` content."""
    verb = run.get("verb")
    if verb is None and str(run.get("command", "")).startswith("medprune "):
        verb = str(run["command"]).split()[1]  # folders from before "verb" was recorded
    return None if verb is None else str(verb)


def read_json_dict(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
