"""From a :class:`~medprune.config.RunConfig` to results on disk: the steps every CLI verb uses.

::

    setup = setup_run(load_config("run.yaml"))          # data splits, loaders, task, inputs
    base, _ = obtain_base(setup, out_dir)                # trained once, or loaded
    record, result = run_record(setup, base, "beta_rank", Target(macs=0.5), seed=0)

:func:`run_train` and :func:`run_prune` are the whole ``medprune train`` / ``medprune prune``.
A run folder holds ``config.resolved.yaml``, ``run.json`` (seed, versions, device, git hash,
timings, metrics, measurements), the model as ``model.pt`` (+ ``plan.json`` when pruned) and
``report.md`` / ``report.html``. Files are written as each stage finishes, so Ctrl-C keeps what
was done.
"""

from __future__ import annotations

from medprune.pipeline.base import obtain_base
from medprune.pipeline.checks import check_config
from medprune.pipeline.files import environment, git_hash, load_model, save_model, write_json
from medprune.pipeline.runs import (
    FINETUNE_CONTROL,
    base_record,
    check_latency_target,
    finetune_record,
    finetune_run,
    make_target,
    method_context,
    method_options,
    prune_model,
    resolve_method,
    run_prune,
    run_record,
    run_train,
)
from medprune.pipeline.setup import (
    DEFAULT_MODELS,
    RunSetup,
    build_model,
    channel_counts,
    evaluate_model,
    measure_model,
    setup_run,
    train_model,
)

__all__ = [
    "FINETUNE_CONTROL",
    "finetune_record",
    "finetune_run",
    "DEFAULT_MODELS",
    "RunSetup",
    "base_record",
    "build_model",
    "check_config",
    "check_latency_target",
    "channel_counts",
    "environment",
    "evaluate_model",
    "git_hash",
    "load_model",
    "make_target",
    "measure_model",
    "method_context",
    "method_options",
    "obtain_base",
    "prune_model",
    "resolve_method",
    "run_prune",
    "run_record",
    "run_train",
    "save_model",
    "setup_run",
    "train_model",
    "write_json",
]
