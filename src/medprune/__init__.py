"""medprune: structural pruning of medical-imaging CNNs that protects the rare class.

Three levels of API::

    import medprune as mp
    graph = mp.build_graph(model, example_inputs)              # coupled channel groups
    scores = mp.get_criterion("beta_rank")(graph, calib_loader)  # {group.key: (n_channels,)}
    result = mp.prune(model, example_inputs, criterion="beta_rank", target_macs=0.5,
                      calibration=calib_loader)                # smaller nn.Module + replayable plan

Public names are imported lazily so that ``import medprune`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from medprune._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # graph engine
    "build_graph": "medprune.graph",
    "PruningGraph": "medprune.graph",
    "PruningGroup": "medprune.graph",
    "prune_channels": "medprune.graph",
    "PruningPlan": "medprune.graph",
    "apply_plan": "medprune.graph",
    # criteria
    "get_criterion": "medprune.criteria",
    "list_criteria": "medprune.criteria",
    "register_criterion": "medprune.criteria",
    # plans and schedules
    "Target": "medprune.methods",
    "plan_pruning": "medprune.methods",
    "prune": "medprune.methods",
    "PruneResult": "medprune.methods",
    # models, data, tasks, measurement
    "create_model": "medprune.models",
    "list_models": "medprune.models",
    "measure": "medprune.measure",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'medprune' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    # `medprune.measure` is a callable package: keep the package so submodule imports still work.
    value = module if module_name == f"medprune.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
