"""The checks of a run config that every verb runs before any work (no data read, no model
built), so that a typo fails in a second rather than after training; ``medprune config`` runs
them too."""

from __future__ import annotations

from collections.abc import Sequence

from medprune.config import RunConfig
from medprune.pipeline.runs import check_latency_target, config_name, resolve_method
from medprune.pipeline.setup import DEFAULT_MODELS, task_kind

__all__ = ["check_config"]


def check_config(config: RunConfig, methods: Sequence[str] | None = None) -> None:
    """Check ``config`` up front, with the messages the later steps would give.

    * method / criterion names: ``methods``, by default the ``prune`` method (or criterion) and
      every ``compare.methods`` entry; a latency target's planners and device
      (:func:`~medprune.pipeline.check_latency_target`, for ``methods`` or else the ``prune``
      one);
    * the data kind and keys (:func:`medprune.data.check_data_spec`) and ``task.kind``;
    * the loss name (``task.loss``) of that task;
    * the model name and the keys of ``model.kwargs``
      (:func:`medprune.models.registry.check_model_kwargs`).

    Args:
        config: the run config.
        methods: the method / criterion names the verb runs (``()``: none, as ``train``).

    Raises:
        ConfigError: the first problem found, naming the value and the fix (did-you-mean).
    """
    from medprune.data import check_data_spec
    from medprune.models.registry import check_model_kwargs
    from medprune.tasks.losses import check_loss_name

    prune_name = config_name(config)
    names = [prune_name, *config.compare.methods] if methods is None else list(methods)
    for name in names:
        resolve_method(name)
    planners = [prune_name] if methods is None else names
    if planners:
        check_latency_target(config, planners)
    task = task_kind(config, check_data_spec(dict(config.data)))
    if config.task.loss is not None:
        check_loss_name(task, config.task.loss)
    model = DEFAULT_MODELS[task] if config.model.name == "auto" else config.model.name
    check_model_kwargs(model, config.model.kwargs)
