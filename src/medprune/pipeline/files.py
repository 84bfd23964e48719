"""Model files (``model.pt`` + ``plan.json``), JSON output and the environment of a run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import CheckpointError, ConfigError
from medprune.pipeline.setup import RunSetup
from medprune.typing import PathLike


def writes_files() -> bool:
    """Whether this process writes the run folder and prints results: True, except on a
    ``torchrun`` rank other than 0 (every rank trains; rank 0 alone writes and prints, as
    :mod:`medprune.progress` shows progress on rank 0 alone)."""
    from medprune.tasks.distributed import is_main_process

    return is_main_process()


def save_model(path: PathLike, model: nn.Module, setup: RunSetup, *, plan: Any = None) -> Path:
    """Write ``model.pt`` (state dict + how to rebuild the architecture) and ``plan.json``
    (nothing on a ``torchrun`` rank other than 0, see :func:`writes_files`)."""
    from medprune.tasks import save_checkpoint

    path = Path(path)
    if not writes_files():
        return path
    plan_json = None
    if plan is not None:
        plan_path = path.with_name("plan.json")
        plan.save(plan_path)
        plan_json = plan_path.read_text()
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_name": setup.model_name,
        "model_kwargs": json.dumps(setup.model_kwargs),
        "input_shape": list(setup.example_inputs.shape),
        "plan": plan_json,
    }
    return save_checkpoint(path, payload)


def load_model(
    path: PathLike,
    *,
    model_name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    input_shape: list[int] | None = None,
    fallback_name: str | None = None,
    fallback_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from ``model.pt`` (``torch.load(weights_only=True)``), replaying its plan.

    Args:
        path: a ``model.pt`` written by :func:`save_model`, or a bare state dict.
        model_name, model_kwargs: override the architecture stored in the file.
        input_shape: the example input shape to report (the plan is replayed with the stored
            shape when the file has one).
        fallback_name, fallback_kwargs: the architecture of a bare state dict.

    Returns:
        ``(model, info)``; ``info`` holds ``model_name``, ``model_kwargs``, ``input_shape`` and
        ``plan`` (JSON text or None).
    """
    from medprune.models import create_model
    from medprune.tasks import load_checkpoint

    payload = load_checkpoint(path)
    if "state_dict" in payload:
        state = payload["state_dict"]
        info = {k: payload.get(k) for k in ("model_name", "input_shape", "plan")}
        info["model_kwargs"] = json.loads(payload.get("model_kwargs") or "{}")
    else:
        state, info = payload, {"model_name": None, "model_kwargs": {}, "input_shape": None}
        info["plan"] = None
    if not info["model_name"]:
        info["model_name"] = fallback_name
        info["model_kwargs"] = dict(fallback_kwargs or {})
    info["model_name"] = model_name or info["model_name"]
    if model_kwargs:
        info["model_kwargs"] = {**info["model_kwargs"], **model_kwargs}
    stored_shape = info["input_shape"]
    info["input_shape"] = input_shape or stored_shape
    if not info["model_name"]:
        raise ConfigError(
            f"{path} holds a bare state dict; pass the architecture with --model NAME."
        )
    model = create_model(info["model_name"], **info["model_kwargs"])
    plan_text = info.get("plan")
    if plan_text is None and Path(path).with_name("plan.json").is_file():
        plan_text = Path(path).with_name("plan.json").read_text()
        info["plan"] = plan_text
    if plan_text:
        model = _replay_plan(model, plan_text, stored_shape or info["input_shape"], path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path} does not match model {info['model_name']!r} {info['model_kwargs']}: {e}"
        ) from e
    return model, info


def _replay_plan(
    model: nn.Module, plan_text: str, shape: list[int] | None, path: PathLike
) -> nn.Module:
    from medprune.graph import PruningPlan, apply_plan

    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(plan_text)
        plan = PruningPlan.load(plan_path)
    if shape is None:
        raise CheckpointError(f"{path} has a pruning plan but no input shape; pass --input-shape.")
    out = apply_plan(model, plan, torch.zeros(*shape))
    return out if isinstance(out, nn.Module) else model


def write_json(path: PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (temporary file + ``os.replace``; nothing on a
    ``torchrun`` rank other than 0, see :func:`writes_files`)."""
    path = Path(path)
    if not writes_files():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


def git_hash() -> str | None:
    """The commit of the medprune checkout (``+dirty`` when modified), or None outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "") if rev else None


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Versions, device and git hash written into every ``run.json``."""
    import monai

    from medprune._version import __version__

    info: dict[str, Any] = {
        "medprune": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "git": git_hash(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - a core dependency
        info["onnxruntime"] = None
    return info
