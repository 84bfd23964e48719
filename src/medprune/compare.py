"""``medprune compare``: every method x target x seed under identical conditions, resumable.

The base model is trained once (or loaded); each grid cell then prunes a copy of it with the same
data, calibration subset, fine-tuning recipe and seed. Each finished cell is appended to
``results.jsonl`` at once (one line, flushed and fsynced), so a killed comparison restarts where
it stopped without redoing finished cells; a cell interrupted mid-training continues from its
last finished epoch (its method's phases checkpoint to ``runs/<cell>/train_state/``, a folder
deleted once the cell's record is written; a failed cell keeps it, so ``retry_failed`` resumes).

Latency is measured once the grid is done, for the base and every finished cell together, their
repetitions interleaved (:mod:`medprune.pipeline.latency`), so that identical architectures get
the same latency and the report can state the noise; each cell's pruned model is kept in
``models/<cell>/model.pt`` for this (and for the user)::

    result = run_compare(load_config("run.yaml", {"compare.methods": "l1,hrank,beta_rank"}))
    result.records      # base + one record per cell, as in results.jsonl
    result.report.html  # the comparison report
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from medprune.config import RunConfig, save_resolved
from medprune.errors import ConfigError
from medprune.pipeline.files import writes_files
from medprune.progress import progress_bar
from medprune.report import ReportPaths, apply_latency, read_jsonl, write_report
from medprune.typing import PathLike

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class GridCell:
    """One run of the grid: a method or criterion name, a target fraction and a seed."""

    name: str
    target: float
    seed: int

    @property
    def key(self) -> str:
        """Stable identifier stored in every record (``"beta_rank@0.5#0"``)."""
        return f"{self.name}@{self.target:g}#{self.seed}"


def make_grid(
    methods: Sequence[str], targets: Sequence[float], seeds: Sequence[int]
) -> list[GridCell]:
    """Cells in run order: seed-major, then target, then method (every method gets a result at
    the first seed before repeats start)."""
    if len(set(methods)) != len(methods):
        raise ConfigError(f"compare.methods has duplicates; got {list(methods)}.")
    return [GridCell(m, float(t), int(s)) for s in seeds for t in targets for m in methods]


def append_record(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line durably: write, flush, fsync (a torn last line is repaired first)."""
    path = Path(path)
    if not writes_files():  # torchrun: rank 0 alone writes the results
        return
    line = json.dumps(record, default=str)
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")  # the previous writer was killed mid-line
        f.write(line.encode("utf-8") + b"\n")
        f.flush()
        os.fsync(f.fileno())


def run_grid(
    cells: Sequence[GridCell],
    run_one: Callable[[GridCell], dict[str, Any]],
    results_path: PathLike,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    on_recorded: Callable[[GridCell, dict[str, Any]], None] | None = None,
    describe: Callable[[GridCell], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell not yet in ``results_path``; return the records of all cells in grid order.

    Args:
        cells: the grid.
        run_one: computes the record of one cell; an exception (other than KeyboardInterrupt /
            SystemExit) is recorded as ``status: "failed"`` with the error, and the grid goes on.
        results_path: the JSON-lines file (created; earlier records are kept).
        retry_failed: rerun cells whose earlier record failed.
        progress: show a progress bar for the grid.
        on_recorded: called with each cell and its record once the record is on disk.
        describe: keys every record of a cell gets unless it has them (e.g. ``method`` and
            ``criterion``, so a failed cell's report row still names its method).
    """
    done: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(results_path):
        if record.get("kind") == "run" and record.get("key"):
            done[record["key"]] = record  # the last record of a key wins
    todo = [
        c
        for c in cells
        if c.key not in done or (retry_failed and done[c.key].get("status") != "ok")
    ]
    if len(todo) < len(cells):
        logger.info(
            "resuming: %d of %d runs already in %s",
            len(cells) - len(todo),
            len(cells),
            results_path,
        )
    bar = progress_bar(
        total=len(cells),
        initial=len(cells) - len(todo),
        desc="compare",
        enabled=progress,
        unit="runs",
    )
    try:
        for cell in todo:
            bar.set_postfix_str(cell.key)
            t0 = time.perf_counter()
            try:
                record = dict(run_one(cell))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # one method failing must not lose the grid
                logger.warning("run %s failed: %s", cell.key, e)
                record = {
                    "kind": "run",
                    "status": "failed",
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=8),
                    "time_s": time.perf_counter() - t0,
                }
            record.update(key=cell.key, name=cell.name, target=cell.target, seed=cell.seed)
            for k, v in (describe(cell) if describe is not None else {}).items():
                record.setdefault(k, v)
            record.setdefault("kind", "run")
            record.setdefault("status", "ok")
            append_record(results_path, record)
            done[cell.key] = record
            if on_recorded is not None:
                on_recorded(cell, record)
            bar.update(1)
    finally:
        bar.close()
    return [done[c.key] for c in cells]


@dataclass
class CompareResult:
    """What :func:`run_compare` returns.

    Attributes:
        out_dir: the comparison folder.
        records: the base record, then one per cell; their ``measurement`` latencies are the
            interleaved ones of ``latency``.
        report: where the report was written.
        latency: the ``kind: "latency"`` records of the interleaved pass (one per backend; their
            ``note`` states the noise).
    """

    out_dir: Path
    records: list[dict[str, Any]]
    report: ReportPaths
    latency: list[dict[str, Any]] = field(default_factory=list)


def run_compare(
    config: RunConfig,
    *,
    out: PathLike | None = None,
    checkpoint: PathLike | None = None,
    command: str | None = None,
    title: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Train (or load) the base once, run the ``config.compare`` grid, write the report.

    Writes into ``out`` (default ``config.out``): ``config.resolved.yaml``, ``base/model.pt``,
    ``results.jsonl`` (the base record first, then one line per cell, then one ``kind:
    "latency"`` line per latency backend), ``models/<cell>/model.pt`` (+ ``plan.json``),
    ``report.md``, ``report.html`` and ``plots/``; while a cell trains, ``runs/<cell>/train_state/`` (its epoch
    checkpoints, deleted once the cell succeeded). Rerunning with the same ``out`` resumes, an
    interrupted cell from its last finished epoch. A folder holding a finished ``medprune
    train`` / ``prune`` run is not written into: an explicit ``out`` is refused unless
    ``overwrite``; ``config.out`` makes way for ``<out>/compare`` (``log`` says so).

    Raises:
        ConfigError: an unknown method / criterion name (before any training), or a resumed
            folder whose resolved config differs in a way that changes results.
    """
    from medprune.pipeline import (
        FINETUNE_CONTROL,
        base_record,
        make_target,
        obtain_base,
        run_record,
        setup_run,
    )
    from medprune.pipeline.checks import check_config
    from medprune.pipeline.files import environment, save_model, write_json
    from medprune.pipeline.folders import choose_out_dir
    from medprune.pipeline.latency import latency_pass
    from medprune.pipeline.runs import (
        CRITERION_METHODS,
        discard_train_state,
        finetune_run,
        resolve_method,
        train_state_dir,
    )

    cc = config.compare
    check_config(config, methods=cc.methods)  # names, keys, losses: before any training
    out_dir = choose_out_dir(
        config,
        verb="compare",
        out=out,
        overwrite=overwrite,
        checkpoint=checkpoint,
        stem="compare",
        say=log,
    )
    config = config.model_copy(update={"out": str(out_dir)})  # where the run really goes
    cells = make_grid(cc.methods, cc.targets, cc.seeds)
    _check_resume(config, out_dir)
    if writes_files():
        save_resolved(config, out_dir / "config.resolved.yaml")
    results = out_dir / RESULTS_FILE
    setup = setup_run(config)
    base, info = obtain_base(setup, out_dir, checkpoint=checkpoint, say=log)
    base_rec = next((r for r in read_jsonl(results) if r.get("kind") == "base"), None)
    if base_rec is None:
        base_rec = base_record(
            setup, base, latency=False, source=info["source"], train_time_s=info["train_time_s"]
        )
        base_rec["environment"] = environment(setup.device)
        append_record(results, base_rec)

    if cc.finetune_control and config.prune.finetune.epochs > 0:
        cells = [GridCell(FINETUNE_CONTROL, 0.0, s) for s in cc.seeds] + cells

    def state_dir(cell: GridCell) -> Path:
        return train_state_dir(out_dir, cell.name, cell.target, cell.seed)

    models: dict[str, nn.Module] = {}  # this session's pruned models, for the latency pass

    def run_one(cell: GridCell) -> dict[str, Any]:
        plan = None
        if cell.name == FINETUNE_CONTROL:
            record, model = finetune_run(
                setup, base, seed=cell.seed, checkpoint_dir=state_dir(cell), latency=False
            )
        else:
            target = make_target(config.prune.target, cell.target)
            record, result = run_record(
                setup,
                base,
                cell.name,
                target,
                seed=cell.seed,
                checkpoint_dir=state_dir(cell),
                latency=False,
            )
            model, plan = result.model, result.plan
        save_model(model_path(out_dir, cell), model, setup, plan=plan)
        models[cell.key] = model
        return record

    def describe(cell: GridCell) -> dict[str, Any]:
        if cell.name == FINETUNE_CONTROL:
            return {"method": None, "criterion": None}
        method, criterion = resolve_method(cell.name)
        if method in CRITERION_METHODS:
            criterion = criterion or config.prune.criterion
        return {"method": method, "criterion": criterion}

    def recorded(cell: GridCell, record: dict[str, Any]) -> None:
        if record.get("status") == "ok":
            discard_train_state(state_dir(cell))

    records = run_grid(
        cells,
        run_one,
        results,
        retry_failed=cc.retry_failed,
        progress=config.progress,
        on_recorded=recorded,
        describe=describe,
    )
    latency = latency_pass(setup, _grid_models(out_dir, base, cells, records, models))
    for latency_record in latency:
        append_record(results, latency_record)
    all_records = [base_rec, *records, *latency]
    write_json(out_dir / "summary.json", summarize(all_records))
    if writes_files():
        report = write_report(
            out_dir,
            all_records,
            title=title or f"medprune compare: {setup.model_name} on {config.data.get('kind')}",
            command=command,
            config_yaml=(out_dir / "config.resolved.yaml").read_text(),
        )
    else:  # another torchrun rank: rank 0 writes the report there
        report = ReportPaths(out_dir / "report.md", out_dir / "report.html", ())
    measured = [dict(r) for r in apply_latency(all_records) if r.get("kind") != "latency"]
    return CompareResult(out_dir, measured, report, latency)


def model_path(out_dir: PathLike, cell: GridCell) -> Path:
    """``out_dir/models/<name>-<target>-seed<seed>/model.pt``: the pruned model of one cell."""
    return Path(out_dir) / "models" / f"{cell.name}-{cell.target:g}-seed{cell.seed}" / "model.pt"


def _grid_models(
    out_dir: Path,
    base: nn.Module,
    cells: Sequence[GridCell],
    records: Sequence[Mapping[str, Any]],
    models: Mapping[str, nn.Module],
) -> dict[str, nn.Module]:
    """The base (as ``"base"``) and every finished cell's model (by cell key): from this
    session, else loaded from :func:`model_path` (cells of an earlier, interrupted run)."""
    from medprune.pipeline import load_model

    out: dict[str, nn.Module] = {"base": base}
    for cell, record in zip(cells, records, strict=True):
        if record.get("status") != "ok":
            continue
        model = models.get(cell.key)
        path = model_path(out_dir, cell)
        if model is None and path.is_file():
            model, _ = load_model(path)
        if model is None:
            logger.warning(
                "no pruned model of %s at %s: it is left out of the interleaved latency pass "
                "(its record keeps the latency measured with it, if any).",
                cell.key,
                path,
            )
            continue
        out[cell.key] = model
    return out


def _check_resume(config: RunConfig, out_dir: Path) -> None:
    """Refuse to resume into a folder made with other data / model / recipe settings."""
    import yaml

    from medprune.config import config_to_dict

    path = out_dir / "config.resolved.yaml"
    if not (path.is_file() and (out_dir / RESULTS_FILE).is_file()):
        return
    old = yaml.safe_load(path.read_text()) or {}
    new = config_to_dict(config)
    for cfg in (old, new):  # the grid itself may grow; these do not change a finished cell
        for key in ("amount", "method", "criterion"):
            (cfg.get("prune") or {}).pop(key, None)
    for key in ("seed", "data", "model", "task", "train", "prune", "measure"):
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"{out_dir} holds a comparison made with a different {key!r} section; "
                f"use another --out or delete {out_dir / RESULTS_FILE} to start again."
            )


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of each (name, target): the JSON twin of the report table."""
    from medprune.report import aggregate

    base, rows = aggregate(records)
    out = []
    for row in ([base] if base else []) + rows:
        out.append(
            {
                "name": row.name,
                "label": row.label,
                "target": row.target,
                "kind": row.kind,
                "seeds": row.seeds,
                "failed": row.failed,
                "mean": {k: row.mean(k) for k in row.values},
                "std": {k: row.std(k) for k in row.values},
                "per_class_mean": {c: row.class_mean(c) for c in row.per_class},
            }
        )
    return {"rows": out}


__all__ = [
    "CompareResult",
    "GridCell",
    "append_record",
    "make_grid",
    "model_path",
    "run_compare",
    "run_grid",
    "summarize",
]
