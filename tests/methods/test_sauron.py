"""Sauron: filters removed physically during training, optimiser kept working, 2-D and 3-D."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medprune.data import make_synthetic_segmentation
from medprune.errors import ConfigError
from medprune.methods.base import MethodContext, Target, get_method
from medprune.methods.sauron import sauron
from medprune.models import create_model
from medprune.tasks import SegmentationTask, TrainCallback, TrainRecipe, make_loader

# aggressive schedule so that a 3-epoch run prunes: tau starts high and rises every epoch
FAST = dict(tau_init=0.5, tau_max=0.9, kappa=4, rho=0, mu=1.0)


def _context(spatial_dims: int = 2, optimizer: str = "adam", epochs: int = 3) -> MethodContext:
    size = 16 if spatial_dims == 2 else 8
    train_set = make_synthetic_segmentation(8, image_size=size, spatial_dims=spatial_dims, seed=0)
    val_set = make_synthetic_segmentation(4, image_size=size, spatial_dims=spatial_dims, seed=1)
    return MethodContext(
        task=SegmentationTask(2, spatial_dims=spatial_dims),
        train_loader=make_loader(train_set, 4, shuffle=True, seed=0),
        val_loader=make_loader(val_set, 4, shuffle=False),
        recipe=TrainRecipe(epochs=epochs, optimizer=optimizer, lr=1e-2, scheduler="none"),
        progress=False,
    )


class _StepWatch(TrainCallback):
    """Checks after every optimiser step that the live parameters are the optimised ones."""

    def __init__(self) -> None:
        self.changed: list[bool] = []

    def after_backward(self, state: Any) -> None:
        self._before = [p.detach().clone() for p in state.model.parameters()]

    def after_step(self, state: Any) -> None:
        params = list(state.model.parameters())
        optimised = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        assert all(id(p) in optimised for p in params), "a parameter is not in the optimizer"
        moved = [not torch.equal(a, b.detach()) for a, b in zip(self._before, params, strict=True)]
        self.changed.append(any(moved))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sauron_removes_filters_during_training_2d(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medprune.methods._training as training

    watch = _StepWatch()
    real_fit = training.fit

    def fit_with_watch(*args: Any, callbacks: Any = (), **kwargs: Any) -> Any:
        return real_fit(*args, callbacks=[*callbacks, watch], **kwargs)

    monkeypatch.setattr("medprune.methods.sauron.fit", fit_with_watch)
    model = create_model("tiny_unet", in_channels=1, out_channels=2)
    example = torch.zeros(1, 1, 16, 16)
    result = sauron(model, example, context=_context(optimizer=optimizer), **FAST)
    history = result.history
    assert len(history) == 3
    assert result.summary["channels_after"] < result.summary["channels_before"]
    assert result.summary["macs_after"] < result.summary["macs_before"]
    assert history[-1]["macs"] <= history[0]["macs"] and all(
        h["epoch_seconds"] > 0 for h in history
    )
    assert any(h["removed"] for h in history)
    assert all(watch.changed) and len(watch.changed) == 3 * 2  # the optimizer kept stepping
    out = result.model(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 2, 16, 16)
    from medprune.graph import apply_plan  # the recorded plan rebuilds the compact architecture

    replayed = apply_plan(create_model("tiny_unet", in_channels=1, out_channels=2), result.plan)
    replayed.load_state_dict(result.model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == result.summary["params_before"]


def test_sauron_3d_and_faithful_mode() -> None:
    model = create_model("tiny_unet3d", in_channels=1, out_channels=2)
    result = sauron(model, torch.zeros(1, 1, 8, 8, 8), context=_context(3, epochs=2),
                    faithful=True, **FAST)  # fmt: skip
    assert result.summary["channels_after"] < result.summary["channels_before"]
    assert result.model(torch.randn(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_sauron_stops_at_the_target() -> None:
    model = create_model("tiny_unet", in_channels=1, out_channels=2)
    result = sauron(model, torch.zeros(1, 1, 16, 16), context=_context(epochs=3),
                    target=Target(macs=0.05), **FAST)  # fmt: skip
    pruned_epochs = [h["epoch"] for h in result.history if h["removed"]]
    assert pruned_epochs == [0]  # the first removal already meets 5%


def test_sauron_requires_a_validation_split() -> None:
    assert get_method("sauron") is sauron
    ctx = _context()
    ctx.val_loader = None
    with pytest.raises(ConfigError, match="sauron needs a validation split"):
        sauron(create_model("tiny_unet"), torch.zeros(1, 1, 16, 16), context=ctx)
    with pytest.raises(ConfigError, match="lambda_opt must be a number >= 0"):
        sauron(create_model("tiny_unet"), torch.zeros(1, 1, 16, 16), context=_context(),
               lambda_opt=-1.0)  # fmt: skip


@pytest.mark.data
def test_sauron_on_kvasir_seg(data_dir: Path) -> None:
    from medprune.data import SegmentationFolder, random_subset

    root = data_dir / "kvasir-seg"
    train_set = random_subset(SegmentationFolder(root, split="train", image_size=(64, 64)), 16)
    val_set = random_subset(SegmentationFolder(root, split="val", image_size=(64, 64)), 8)
    ctx = MethodContext(
        task=SegmentationTask(2),
        train_loader=make_loader(train_set, 4, shuffle=True, seed=0),
        val_loader=make_loader(val_set, 4, shuffle=False),
        recipe=TrainRecipe(epochs=2, optimizer="adam", lr=3e-3),
        progress=False,
    )
    model = create_model("unet", in_channels=3, out_channels=2, depth=2, base_channels=8)
    result = sauron(model, torch.zeros(1, 3, 64, 64), context=ctx, **FAST)
    assert result.summary["macs_after"] <= result.summary["macs_before"]
    assert len(result.history) == 2 and "val_loss" in result.history[-1]


_DDP_SCRIPT = """
import hashlib, torch
import medprune.tasks.distributed as ddp
from medprune.data import make_synthetic_segmentation
from medprune.methods.base import MethodContext
from medprune.methods.sauron import sauron
from medprune.models import create_model
from medprune.tasks import SegmentationTask, TrainRecipe, make_loader
torch.set_num_threads(1)
train_set = make_synthetic_segmentation(8, image_size=16, seed=0)
val_set = make_synthetic_segmentation(4, image_size=16, seed=1)
ctx = MethodContext(task=SegmentationTask(2), train_loader=make_loader(train_set, 2, shuffle=True),
                    val_loader=make_loader(val_set, 2, shuffle=False), progress=False,
                    recipe=TrainRecipe(epochs=2, optimizer="adam", lr=1e-2))
torch.manual_seed(0)
result = sauron(create_model("tiny_unet"), torch.zeros(1, 1, 16, 16), context=ctx,
                tau_init=0.5, tau_max=0.9, kappa=4, rho=0, mu=1.0)
digest = hashlib.md5(b"".join(p.detach().numpy().tobytes() for p in result.model.parameters()))
print("RESULT", ddp.rank(), result.summary["channels_after"], digest.hexdigest(), flush=True)
"""


@pytest.mark.slow
def test_sauron_prunes_identically_on_every_rank(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "ddp_sauron.py"
    script.write_text(_DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    lines = [ln.split() for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    assert done.returncode == 0 and len(lines) == 2, done.stderr[-2000:]
    (_, _, channels_0, digest_0), (_, _, channels_1, digest_1) = lines
    assert channels_0 == channels_1 and digest_0 == digest_1


def test_sauron_says_when_a_short_schedule_misses_the_target(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = create_model("tiny_unet", in_channels=1, out_channels=2)
    with caplog.at_level("WARNING", logger="medprune.methods.sauron"):
        result = sauron(
            model, torch.zeros(1, 1, 16, 16), context=_context(epochs=1), target=Target(macs=0.5)
        )  # reference defaults: nothing moves in 1 epoch
    assert result.summary["target_reached"] is False
    assert "short of the 50% target" in caplog.text and "rho=5" in caplog.text
    fast = sauron(model, torch.zeros(1, 1, 16, 16), context=_context(epochs=3),
                  target=Target(macs=0.05), **FAST)  # fmt: skip
    assert fast.summary["target_reached"] is True
