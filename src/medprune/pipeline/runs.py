"""Base model, pruning runs and their records; ``medprune train`` / ``medprune prune`` end to end."""

from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.config import RunConfig, save_resolved
from medprune.errors import ConfigError
from medprune.methods.base import MethodContext, PruneResult, Target
from medprune.pipeline.base import obtain_base
from medprune.pipeline.files import environment, save_model, write_json, writes_files
from medprune.pipeline.folders import choose_out_dir
from medprune.pipeline.setup import (
    RunSetup,
    build_model,
    channel_counts,
    evaluate_model,
    measure_model,
    setup_run,
    train_model,
)
from medprune.typing import PathLike

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- pruning
CRITERION_METHODS = ("oneshot", "iterative")
UNSTRUCTURED_METHODS = ("lottery",)


def resolve_method(name: str) -> tuple[str, str | None]:
    """``"beta_rank"`` (a criterion) -> ``("oneshot", "beta_rank")``; ``"sfp"`` -> ``("sfp", None)``."""
    from medprune.criteria import list_criteria
    from medprune.methods import list_methods

    methods, criteria = list_methods(), list_criteria()
    if name in methods:
        return name, None
    if name in criteria:
        return "oneshot", name
    close = difflib.get_close_matches(name, methods + criteria, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"Unknown method or criterion {name!r}.{hint} Methods: {', '.join(methods)}; "
        f"criteria: {', '.join(criteria)}."
    )


def make_target(kind: str, amount: float) -> Target:
    """``Target(macs=amount)`` and friends."""
    return Target(**{kind: float(amount)})


def train_state_dir(out_dir: PathLike, name: str, amount: float, seed: int) -> Path:
    """``out_dir/runs/<name>-<amount>-seed<seed>/train_state``: the resumable training checkpoints
    of one method run (``MethodContext.checkpoint_dir``), deleted once its result is recorded."""
    return Path(out_dir) / "runs" / f"{name}-{amount:g}-seed{seed}" / "train_state"


def discard_train_state(path: PathLike) -> None:
    """Delete a run's ``train_state`` folder, then its run folder and ``runs/`` when left empty."""
    path = Path(path)
    if not writes_files():  # rank 0 owns the run folder
        return
    shutil.rmtree(path, ignore_errors=True)
    for folder in (path.parent, path.parent.parent):
        with contextlib.suppress(OSError):  # not empty, or already gone
            folder.rmdir()


def method_context(
    setup: RunSetup, *, seed: int, log: Any = None, checkpoint_dir: PathLike | None = None
) -> MethodContext:
    """The :class:`MethodContext` shared by every method of one run or comparison."""
    guard = None
    if setup.config.prune.guard is not None:
        from medprune.methods.guard import RecallGuard

        guard = RecallGuard(setup.task, setup.val_loader, **setup.config.prune.guard)
    return MethodContext(
        task=setup.task,
        train_loader=setup.train_loader,
        val_loader=setup.val_loader,
        calibration=setup.calibration,
        recipe=setup.config.prune.finetune,
        seed=seed,
        device=setup.device,
        guard=guard,
        progress=setup.config.progress,
        log=log,
        checkpoint_dir=checkpoint_dir,
    )


def method_options(options: dict[str, Any], name: str) -> dict[str, Any]:
    """Options of method / criterion ``name`` from ``prune.options``.

    Plain keys go to every method; a key naming a method or criterion with a mapping value
    (``{"sfp": {"interval": 2}, "beta_rank": {"criterion_kwargs": {...}}}``) goes only to that
    one, so one config can tune every method of a comparison.
    """
    from medprune.criteria import list_criteria
    from medprune.methods import list_methods

    names = set(list_methods()) | set(list_criteria())
    method_name, _ = resolve_method(name)
    out = {k: v for k, v in options.items() if not (k in names and isinstance(v, dict))}
    for key in (method_name, name):
        if isinstance(options.get(key), dict):
            out.update(options[key])
    return out


def prune_model(
    setup: RunSetup,
    base: nn.Module,
    name: str,
    target: Target,
    *,
    seed: int,
    options: dict[str, Any] | None = None,
    checkpoint_dir: PathLike | None = None,
) -> PruneResult:
    """Run method (or criterion) ``name`` on a copy of ``base``; ``base`` is left unchanged.

    A criterion name runs ``oneshot`` with it; ``oneshot`` / ``iterative`` given by name use
    ``config.prune.criterion``. ``options`` (default ``config.prune.options``) go to the method.
    ``checkpoint_dir``: the method's training phases checkpoint there and resume from it.
    """
    from medprune.methods import get_method

    method_name, criterion = resolve_method(name)
    method = get_method(method_name)
    kwargs = method_options(setup.config.prune.options if options is None else options, name)
    if method_name in CRITERION_METHODS:
        kwargs.setdefault("criterion", criterion or setup.config.prune.criterion)
    if target.kind == "latency":
        plan_kwargs = dict(kwargs.get("plan_kwargs") or {})
        plan_kwargs["latency"] = latency_options(setup, method_name, plan_kwargs.get("latency"))
        kwargs["plan_kwargs"] = plan_kwargs
    setup = setup.for_seed(seed)
    torch.manual_seed(seed)
    model = copy.deepcopy(base).to(setup.device)
    events: list[dict[str, Any]] = []
    ctx = method_context(setup, seed=seed, log=events.append, checkpoint_dir=checkpoint_dir)
    result = method(
        model, setup.example_inputs.to(setup.device), context=ctx, target=target, **kwargs
    )
    result.model = result.model.cpu()
    if not result.method:
        result.method = method_name
    return result


def latency_options(
    setup: RunSetup, method_name: str, extra: Mapping[str, Any] | None = None
) -> Any:
    """:class:`~medprune.latency.LatencyOptions` of a ``prune.target: latency`` run.

    Runtime and device from ``prune.latency_runtime`` / ``prune.latency_device`` (None = the run's
    device; ``cpu`` for ``onnxruntime``), threads from ``measure.threads``, ``refresh`` from
    ``prune.latency_refresh``; ``extra`` (``prune.options.plan_kwargs.latency``) sets further
    fields (``tolerance``, ``calibrate``, ``cache_dir``, ...). Only the criteria methods plan to a
    latency.
    """
    if method_name not in CRITERION_METHODS:
        raise ConfigError(
            f"method {method_name!r} cannot honour prune.target: latency; use "
            f"{' or '.join(CRITERION_METHODS)} (or a criterion name), or a macs / params target."
        )
    return _latency_options(setup.config, setup.device, extra)


def _latency_options(config: RunConfig, device: Any, extra: Mapping[str, Any] | None) -> Any:
    from medprune.latency import LatencyOptions
    from medprune.methods.api import default_latency_device

    runtime = config.prune.latency_runtime
    return LatencyOptions.with_extra(
        extra,
        source="prune.options.plan_kwargs.latency",
        runtime=runtime,
        device=default_latency_device(runtime, config.prune.latency_device, device),
        runtime_from="prune.latency_runtime",
        device_from="prune.latency_device",
        threads=config.measure.threads,
        progress=config.progress,
        refresh=config.prune.latency_refresh,
    )


def check_latency_target(config: RunConfig, names: Sequence[str]) -> None:
    """Before any training: with ``prune.target: latency``, every method in ``names`` must plan
    to a latency, and its latency options (runtime, device, ``plan_kwargs.latency``) must be
    valid here.

    Raises:
        ConfigError: naming the method, key or device and the fix.
    """
    if config.prune.target != "latency":
        return
    from medprune.measure._inputs import check_device

    refused = [n for n in names if resolve_method(n)[0] not in CRITERION_METHODS]
    if refused:
        raise ConfigError(
            f"prune.target: latency is planned by {' and '.join(CRITERION_METHODS)} (or a "
            f"criterion name) only; {', '.join(map(repr, refused))} cannot honour it. Drop "
            "them, or use a macs / params target (--target-macs / --target-params)."
        )
    device = check_device(config.device)
    for name in names:
        plan_kwargs = method_options(config.prune.options, name).get("plan_kwargs") or {}
        _latency_options(config, device, plan_kwargs.get("latency"))


def base_record(
    setup: RunSetup, model: nn.Module, *, latency: bool = True, **extra: Any
) -> dict[str, Any]:
    """The ``kind: base`` record of the unpruned model (test metrics and measurement;
    ``latency=False``: no timings, see :func:`measure_model`)."""
    t0 = time.perf_counter()
    record = {
        "kind": "base",
        "name": "unpruned",
        "target": 0.0,
        "seed": setup.config.seed,
        "status": "ok",
        "task": setup.task_kind,
        "class_names": setup.class_names,
        "model": setup.model_name,
        "metrics": evaluate_model(setup, model),
        "measurement": measure_model(setup, model, latency=latency),
        "channels": channel_counts(model),
    }
    record["eval_time_s"] = time.perf_counter() - t0
    record.update(extra)
    return record


def run_record(
    setup: RunSetup,
    base: nn.Module,
    name: str,
    target: Target,
    *,
    seed: int,
    checkpoint_dir: PathLike | None = None,
    latency: bool = True,
) -> tuple[dict[str, Any], PruneResult]:
    """Prune, evaluate and measure one (method, target, seed); returns the record and result.

    ``checkpoint_dir`` (see :func:`train_state_dir`) makes the method's training resumable;
    ``latency=False`` leaves the timings to an interleaved pass (:func:`measure_model`).
    """
    method_name, criterion = resolve_method(name)
    if method_name in CRITERION_METHODS:
        criterion = criterion or setup.config.prune.criterion
    note = None
    if method_name in UNSTRUCTURED_METHODS and target.kind == "macs":
        target = Target(params=target.value)  # masks cannot shrink dense MACs
        note = "unstructured method: the MACs target was applied to parameters"
    t0 = time.perf_counter()
    result = prune_model(setup, base, name, target, seed=seed, checkpoint_dir=checkpoint_dir)
    prune_s = time.perf_counter() - t0
    summary = {k: v for k, v in result.summary.items() if isinstance(v, (int, float, str, bool))}
    if isinstance(result.summary.get("latency"), dict):  # what a latency target achieved
        summary["latency"] = dict(result.summary["latency"])
    if method_name in CRITERION_METHODS and isinstance(summary.get("criterion"), str):
        criterion = summary["criterion"]  # what ran (per-method options may name another)
    record = {
        "kind": "run",
        "name": name,
        "method": method_name,
        "criterion": criterion,
        "target_kind": target.kind,
        "target": target.value,
        "seed": seed,
        "status": "ok",
        "task": setup.task_kind,
        "class_names": setup.class_names,
        "summary": summary,
        "metrics": evaluate_model(setup, result.model),
        "measurement": measure_model(setup, result.model, latency=latency),
        "channels": channel_counts(result.model),
        "prune_time_s": prune_s,
    }
    if method_name in UNSTRUCTURED_METHODS:
        record["masked"] = True  # weights zeroed in place: measured MACs / params are dense
    if note:
        record["note"] = note
    record["time_s"] = time.perf_counter() - t0
    return record, result


FINETUNE_CONTROL = "finetune_only"


def finetune_record(
    setup: RunSetup, base: nn.Module, *, seed: int, checkpoint_dir: PathLike | None = None
) -> dict[str, Any]:
    """The control of a comparison: the unpruned model fine-tuned with the same recipe as every
    method (so a pruned model is compared with equal training, not with an undertrained base).
    With ``checkpoint_dir`` the fine-tuning checkpoints to ``finetune.pt`` there and resumes."""
    return finetune_run(setup, base, seed=seed, checkpoint_dir=checkpoint_dir)[0]


def finetune_run(
    setup: RunSetup,
    base: nn.Module,
    *,
    seed: int,
    checkpoint_dir: PathLike | None = None,
    latency: bool = True,
) -> tuple[dict[str, Any], nn.Module]:
    """:func:`finetune_record` and the fine-tuned model (``latency``: see :func:`run_record`)."""
    t0 = time.perf_counter()
    model = copy.deepcopy(base)
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / "finetune.pt"
    recipe = setup.config.prune.finetune
    history = train_model(setup.for_seed(seed), model, recipe, checkpoint_path=path, seed=seed)
    model = model.cpu()
    record = {
        "kind": "run",
        "name": FINETUNE_CONTROL,
        "method": None,
        "criterion": None,
        "target_kind": setup.config.prune.target,
        "target": 0.0,
        "seed": seed,
        "status": "ok",
        "task": setup.task_kind,
        "class_names": setup.class_names,
        "summary": {"macs_removed": 0.0, "params_removed": 0.0, "epochs": len(history)},
        "metrics": evaluate_model(setup, model),
        "measurement": measure_model(setup, model, latency=latency),
        "channels": channel_counts(model),
    }
    record["time_s"] = time.perf_counter() - t0
    return record, model


@contextlib.contextmanager
def _interruptible(run: dict[str, Any], path: Path) -> Iterator[None]:
    """On Ctrl-C, mark ``run.json`` as interrupted (what finished stays on disk) and re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        run["status"] = "interrupted"
        write_json(path, run)
        raise


def config_name(config: RunConfig) -> str:
    """The grid name of ``config.prune``: the criterion for ``oneshot``, else the method."""
    return config.prune.criterion if config.prune.method == "oneshot" else config.prune.method


def _command() -> str:
    import shlex

    return "medprune " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _report(out_dir: Path, records: list[dict[str, Any]], title: str, command: str) -> None:
    from medprune.report import write_report

    if not writes_files():  # rank 0 writes the report (ranks racing on report.md.tmp crashed)
        return
    config_yaml = (out_dir / "config.resolved.yaml").read_text()
    write_report(out_dir, records, title=title, command=command, config_yaml=config_yaml)


def _start_run(
    config: RunConfig,
    out_dir: Path,
    command: str,
    *,
    verb: str,
    checkpoint: PathLike | None = None,
) -> tuple[RunSetup, dict[str, Any], float]:
    """Write the resolved config, build data / task / loaders, and a ``"running"`` run.json
    (with the verb and checkpoint that identify the run, see :mod:`medprune.pipeline.folders`).

    The resolved config records ``out_dir`` as ``out``: the folder the run really went to
    (``<out>/prune-l1-0.3`` when ``config.out`` was taken).

    Returns the setup, the run record (updated in place by the stages) and the start time.
    """
    config = config.model_copy(update={"out": str(out_dir)})
    if writes_files():
        save_resolved(config, out_dir / "config.resolved.yaml")
    run: dict[str, Any] = {
        "command": command,
        "verb": verb,
        "out_dir": str(out_dir),
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).expanduser().resolve()),
        "seed": config.seed,
        "status": "running",
    }
    t0 = time.perf_counter()
    setup = setup_run(config)
    run["environment"] = environment(setup.device)
    write_json(out_dir / "run.json", run)
    return setup, run, t0


def run_train(
    config: RunConfig,
    *,
    out: PathLike | None = None,
    command: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``medprune train``: train the base model, evaluate and measure it, write the run folder.

    Writes ``config.resolved.yaml``, ``model.pt``, ``run.json`` and ``report.md`` / ``.html``
    into ``out`` (default ``config.out``); returns the ``run.json`` content (``out_dir`` says
    where it went). Another run's finished ``model.pt`` is never overwritten: a taken ``out``
    is refused unless ``overwrite``, a taken ``config.out`` makes way for ``<out>-2`` (``log``
    says so; :func:`~medprune.pipeline.folders.choose_out_dir`).
    """
    from medprune.pipeline.checks import check_config

    command = command or _command()
    check_config(config, methods=())  # a typo fails before any training
    out_dir = choose_out_dir(config, verb="train", out=out, overwrite=overwrite, say=log)
    setup, run, t0 = _start_run(config, out_dir, command, verb="train")
    with _interruptible(run, out_dir / "run.json"):
        return _train_stages(setup, run, out_dir, command, t0)


def _train_stages(
    setup: RunSetup, run: dict[str, Any], out_dir: Path, command: str, t0: float
) -> dict[str, Any]:
    model = build_model(setup)
    history = train_model(setup, model, checkpoint_path=out_dir / "train_state.pt")
    run["timings"] = {"train_s": time.perf_counter() - t0}
    save_model(out_dir / "model.pt", model, setup)
    run["history"] = history
    write_json(out_dir / "run.json", run)
    record = base_record(setup, model)
    run.update(base=record, status="done")
    run["timings"]["total_s"] = time.perf_counter() - t0
    write_json(out_dir / "run.json", run)
    _report(out_dir, [record], f"medprune train: {setup.model_name}", command)
    return run


def run_prune(
    config: RunConfig,
    *,
    out: PathLike | None = None,
    checkpoint: PathLike | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``medprune prune``: base model (trained or loaded), one method at ``config.prune``'s
    target, evaluation and measurement before / after; writes the run folder.

    Files: ``config.resolved.yaml``, ``base/model.pt`` (when trained here), ``model.pt`` +
    ``plan.json`` (the pruned model), ``run.json``, ``report.md`` / ``.html``. Ctrl-C marks
    ``run.json`` as interrupted; a rerun with the same ``out`` reuses ``base/model.pt`` and
    continues the method's training from ``runs/<run>/train_state/`` (deleted once done).
    Returns the ``run.json`` content (``out_dir`` says where it went).

    Another run's finished ``model.pt`` (a training run's, a prune run's with other settings)
    is never overwritten: a taken ``out`` is refused unless ``overwrite``; a taken
    ``config.out`` makes way for ``<config.out>/prune-<name>-<amount>`` (``log`` says so).
    """
    from medprune.pipeline.checks import check_config

    say = log or logger.info
    command = command or _command()
    name = config_name(config)
    target = make_target(config.prune.target, config.prune.amount)
    check_config(config, methods=[name])  # unknown names, keys, losses fail before training
    out_dir = choose_out_dir(
        config,
        verb="prune",
        out=out,
        overwrite=overwrite,
        checkpoint=checkpoint,
        stem=f"prune-{name}-{target.value:g}",
        say=log,
    )
    setup, run, t0 = _start_run(config, out_dir, command, verb="prune", checkpoint=checkpoint)
    with _interruptible(run, out_dir / "run.json"):
        return _prune_stages(setup, run, out_dir, checkpoint, name, target, command, t0, say)


def _interleaved(
    setup: RunSetup,
    base_rec: dict[str, Any],
    base: nn.Module,
    rec: dict[str, Any],
    pruned: nn.Module,
) -> list[dict[str, Any]]:
    """Time base and pruned model interleaved; their records get the medians (in place)."""
    from medprune.pipeline.latency import latency_pass
    from medprune.report.records import apply_latency, record_id

    latency = latency_pass(setup, {record_id(base_rec): base, record_id(rec): pruned})
    for r, applied in zip((base_rec, rec), apply_latency([base_rec, rec, *latency]), strict=False):
        r["measurement"] = applied["measurement"]
    return latency


def _prune_stages(
    setup: RunSetup,
    run: dict[str, Any],
    out_dir: Path,
    checkpoint: PathLike | None,
    name: str,
    target: Target,
    command: str,
    t0: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    config = setup.config
    say(f"base model: {'loading ' + str(checkpoint) if checkpoint else 'training / loading'}")
    base, info = obtain_base(setup, out_dir, checkpoint=checkpoint, say=say)
    run["base_source"] = info["source"]
    run["timings"] = {"base_s": time.perf_counter() - t0}
    run["base"] = base_record(setup, base, latency=False)  # timed with the pruned model below
    write_json(out_dir / "run.json", run)
    say(f"pruning with {name} to remove {target.value:.0%} of {target.kind}")
    state = train_state_dir(out_dir, name, target.value, config.seed)
    record, result = run_record(
        setup, base, name, target, seed=config.seed, checkpoint_dir=state, latency=False
    )
    save_model(out_dir / "model.pt", result.model, setup, plan=result.plan)
    latency = _interleaved(setup, run["base"], base, record, result.model)
    run.update(pruned=record, history=result.history, latency=latency, status="done")
    run["timings"].update(prune_s=record["time_s"], total_s=time.perf_counter() - t0)
    write_json(out_dir / "run.json", run)
    discard_train_state(state)
    records = [run["base"], record, *latency]
    _report(out_dir, records, f"medprune prune: {name} on {setup.model_name}", command)
    return run
