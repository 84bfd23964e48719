"""Pipeline pieces: run setup from a config, model files, method names, run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medprune.config import load_config
from medprune.errors import CheckpointError, ConfigError
from medprune.pipeline import (
    build_model,
    channel_counts,
    environment,
    evaluate_model,
    load_model,
    resolve_method,
    run_prune,
    save_model,
    setup_run,
)
from medprune.tasks import TrainCallback, TrainState

TINY = {
    "data": {
        "kind": "synthetic_classification",
        "n_train": 40,
        "n_val": 16,
        "n_test": 16,
        "image_size": 16,
    },
    "model.name": "tiny_cnn",
    "train.epochs": 1,
    "train.batch_size": 16,
    "prune.calibration_size": 8,
    "prune.finetune": {"epochs": 1, "max_steps_per_epoch": 1},
    "measure.repeats": 1,
    "measure.warmup": 0,
    "measure.onnx": False,
    "progress": False,
}


@pytest.fixture(scope="module")
def setup():  # noqa: ANN201
    return setup_run(load_config(None, {**TINY, "task.class_weights": "balanced"}))


def test_setup_builds_seeded_loaders_and_balanced_calibration(setup) -> None:  # noqa: ANN001
    assert setup.task_kind == "classification"
    assert setup.model_kwargs == {"in_channels": 1, "num_classes": 2}
    assert setup.example_inputs.shape == (1, 1, 16, 16)
    labels = torch.cat([y for _, y in setup.calibration])
    assert len(labels) == 8 and torch.bincount(labels, minlength=2).tolist() == [4, 4]
    first = [y.tolist() for _, y in setup.train_loader]
    assert sum(len(b) for b in first) == 40
    assert first == [y.tolist() for _, y in setup.train_loader]  # order depends on (seed, epoch)
    weights = setup.task.loss_fn.weight
    assert weights[1] > weights[0]  # class_weights='balanced': the rare class weighs more


def test_auto_model_picks_the_task_default() -> None:
    config = load_config(None, {**TINY, "model.name": "auto"})
    assert setup_run(config).model_name == "small_resnet"


def test_model_file_round_trip(tmp_path: Path, setup) -> None:  # noqa: ANN001
    model = build_model(setup).eval()
    path = save_model(tmp_path / "model.pt", model, setup)
    loaded, info = load_model(path)
    assert info["model_name"] == "tiny_cnn" and info["input_shape"] == [1, 1, 16, 16]
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(loaded.eval()(x), model(x))
    assert channel_counts(loaded) == channel_counts(model)


def test_model_file_errors(tmp_path: Path, setup) -> None:  # noqa: ANN001
    bare = tmp_path / "bare.pt"
    torch.save(build_model(setup).state_dict(), bare)
    with pytest.raises(ConfigError, match="bare state dict; pass the architecture with --model"):
        load_model(bare)
    loaded, _ = load_model(bare, model_name="tiny_cnn", model_kwargs={"in_channels": 1})
    assert isinstance(loaded, torch.nn.Module)
    with pytest.raises(CheckpointError, match="does not match model 'tiny_resnet'"):
        load_model(bare, model_name="tiny_resnet")


def test_method_names_resolve() -> None:
    assert resolve_method("beta_rank") == ("oneshot", "beta_rank")
    assert resolve_method("sfp") == ("sfp", None)
    with pytest.raises(ConfigError, match="Did you mean 'hrank'"):
        resolve_method("hrnak")


def test_environment_names_versions() -> None:
    env = environment()
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert {"monai", "medprune", "git", "python"} <= set(env)


def test_run_prune_writes_a_replayable_run_folder(tmp_path: Path) -> None:
    config = load_config(None, {**TINY, "prune.criterion": "l1", "prune.amount": 0.4})
    run = run_prune(config, out=tmp_path, command="medprune prune --criterion l1")
    for name in (
        "config.resolved.yaml",
        "run.json",
        "model.pt",
        "plan.json",
        "report.md",
        "report.html",
    ):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == "done" and saved["pruned"]["criterion"] == "l1"
    removed = saved["pruned"]["summary"]["macs_removed"]
    assert 0.3 <= removed <= 0.5
    pruned, info = load_model(tmp_path / "model.pt")
    assert info["plan"] is not None
    assert channel_counts(pruned) == run["pruned"]["channels"]
    assert sum(channel_counts(pruned).values()) < sum(run["base"]["channels"].values())
    report = (tmp_path / "report.md").read_text()
    assert "| oneshot (l1) | 40% |" in report and "medprune prune --criterion l1" in report
    (latency,) = saved["latency"]  # base and pruned model timed interleaved, + an A/A copy
    assert sorted(latency["models"]) == ["base", "l1@0.4#0"] and latency["noise"]["models"] == 3
    got = saved["pruned"]["measurement"]["latency_ms"]
    assert got == latency["models"]["l1@0.4#0"]["median_ms"]
    assert "## Latency noise" in report and "interleaved runs of 3 models" in report


def test_method_options_per_method() -> None:
    from medprune.pipeline import method_options

    options = {
        "ignore": ["fc"],
        "sfp": {"interval": 2},
        "beta_rank": {"criterion_kwargs": {"a": 1}},
    }
    assert method_options(options, "sfp") == {"ignore": ["fc"], "interval": 2}
    assert method_options(options, "beta_rank") == {"ignore": ["fc"], "criterion_kwargs": {"a": 1}}
    assert method_options(options, "l1") == {"ignore": ["fc"]}


def test_prune_from_a_trained_checkpoint(tmp_path: Path) -> None:
    from medprune.pipeline import run_train

    config = load_config(None, {**TINY, "prune.criterion": "l1", "prune.amount": 0.3})
    trained = run_train(config, out=tmp_path / "train", command="medprune train")
    run = run_prune(config, out=tmp_path / "prune", checkpoint=tmp_path / "train" / "model.pt")
    assert run["base_source"] == str(tmp_path / "train" / "model.pt")
    assert not (tmp_path / "prune" / "base" / "model.pt").exists()  # nothing retrained
    assert run["base"]["metrics"]["balanced_accuracy"] == pytest.approx(
        trained["base"]["metrics"]["balanced_accuracy"]
    )


def test_ctrl_c_keeps_the_base_and_a_rerun_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medprune.pipeline.runs as runs

    config = load_config(None, {**TINY, "prune.criterion": "l1"})

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "run_record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_prune(config, out=tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
    assert (tmp_path / "base" / "model.pt").is_file()
    monkeypatch.undo()
    run = run_prune(config, out=tmp_path)
    assert run["base_source"] == str(tmp_path / "base" / "model.pt") and run["status"] == "done"


def test_seeds_change_training_order_and_calibration_only(setup) -> None:  # noqa: ANN001
    same = setup.for_seed(setup.config.seed)
    assert same is setup
    other = setup.for_seed(1)
    order = [y.tolist() for _, y in setup.train_loader]
    assert [y.tolist() for _, y in other.train_loader] != order  # another shuffle
    assert other.test_loader is setup.test_loader and other.task is setup.task
    calib = torch.cat([x for x, _ in other.calibration])
    assert calib.shape[0] == 8 and not torch.equal(
        calib, torch.cat([x for x, _ in setup.calibration])
    )


def test_3d_segmentation_setup_passes_spatial_dims_and_hd95() -> None:
    config = load_config(
        None,
        {
            **TINY,
            "data": {
                "kind": "synthetic_segmentation",
                "n_train": 4,
                "n_val": 2,
                "n_test": 2,
                "image_size": 16,
                "spatial_dims": 3,
            },
            "model.name": "auto",
            "task.hd95": False,
            "measure.batch_size": 1,
        },
    )
    run = setup_run(config)
    assert run.task_kind == "segmentation" and run.task.spatial_dims == 3
    assert run.task.hd95 is False
    model = build_model(run)
    metrics = evaluate_model(run, model)
    assert metrics["hd95"] is None and 0.0 <= metrics["dice"] <= 1.0


class _Epochs(TrainCallback):
    """Records the epochs a method phase trains; raises KeyboardInterrupt at ``kill`` (epoch,
    step within it), as a killed job would."""

    def __init__(self, kill: tuple[int, int] | None = None) -> None:
        self.kill, self._steps = kill, 0
        self.trained: list[int] = []

    def after_step(self, state: TrainState) -> None:
        self._steps += 1
        if self.kill is not None and (state.epoch, self._steps) == self.kill:
            raise KeyboardInterrupt

    def on_epoch_end(self, state: TrainState) -> None:
        self.trained.append(state.epoch)
        self._steps = 0


def test_a_rerun_continues_a_method_killed_mid_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medprune.tasks
    from medprune.pipeline.runs import train_state_dir

    config = load_config(
        None,
        {
            **TINY,
            "prune.method": "sfp",
            "prune.amount": 0.3,
            "prune.finetune": {"epochs": 3, "max_steps_per_epoch": 2},
        },
    )
    real_train, watch = medprune.tasks.train, _Epochs()

    def train_watched(*args, checkpoint_path=None, callbacks=(), **kwargs):  # noqa: ANN002, ANN003, ANN202
        if checkpoint_path is not None and Path(checkpoint_path).parent.name == "train_state":
            callbacks = [*callbacks, watch]  # the method's phase, not the base training
        return real_train(*args, checkpoint_path=checkpoint_path, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(medprune.tasks, "train", train_watched)
    full = run_prune(config, out=tmp_path / "full")
    assert watch.trained == [0, 1, 2]

    out = tmp_path / "killed"
    state = train_state_dir(out, "sfp", 0.3, config.seed)
    watch.kill, watch.trained = (1, 1), []  # after the first step of the second epoch
    with pytest.raises(KeyboardInterrupt):
        run_prune(config, out=out)
    assert watch.trained == [0]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert torch.load(state / "sfp.pt", weights_only=True)["epoch"] == 1

    watch.kill, watch.trained = None, []
    run = run_prune(config, out=out)
    assert watch.trained == [1, 2]  # only the epochs the killed run had not finished
    assert run["status"] == "done" and run["base_source"] == str(out / "base" / "model.pt")
    assert run["pruned"]["channels"] == full["pruned"]["channels"]
    assert run["pruned"]["channels"] != run["base"]["channels"]
    assert run["pruned"]["metrics"] == full["pruned"]["metrics"]
    assert run["pruned"]["summary"] == full["pruned"]["summary"]
    assert run["history"] == full["history"]
    resumed_model, _ = load_model(out / "model.pt")
    full_model, _ = load_model(tmp_path / "full" / "model.pt")
    for key, value in full_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    assert not state.exists() and not (out / "runs").exists()


def test_a_rerun_with_other_base_settings_is_refused(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    config = load_config(None, {**TINY, "prune.criterion": "l1", "prune.amount": 0.3})
    run_prune(config, out=tmp_path, command="medprune prune")
    stamp = tmp_path / "base" / "base_config.json"
    assert json.loads(stamp.read_text())["train"]["lr"] == config.train.recipe.lr
    # pruning settings may change (replacing the finished pruned model takes --overwrite):
    # the same base model is reused, not retrained
    base_bytes = (tmp_path / "base" / "model.pt").read_bytes()
    again = load_config(None, {**TINY, "prune.criterion": "l2", "prune.amount": 0.3})
    with pytest.raises(ConfigError, match=r"finished prune run of another configuration"):
        run_prune(again, out=tmp_path, command="medprune prune")
    run_prune(again, out=tmp_path, command="medprune prune", overwrite=True)
    assert (tmp_path / "base" / "model.pt").read_bytes() == base_bytes
    # base settings may not
    other = load_config(None, {**TINY, "train.lr": 0.5, "prune.criterion": "l1"})
    with pytest.raises(ConfigError, match=r"other train settings.*another --out"):
        run_prune(other, out=tmp_path, command="medprune prune", overwrite=True)
    # a base folder from before the stamp existed is reused, with a warning
    stamp.unlink()
    with caplog.at_level("WARNING"):
        run_prune(other, out=tmp_path, command="medprune prune", overwrite=True)
    assert "without checking its settings" in caplog.text


def test_unet3d_from_a_config_builds_on_3d_data() -> None:
    """``model: {name: unet3d}`` on 3D data: the pipeline does not pass ``spatial_dims`` to a
    model that is 3D by construction and does not take it."""
    from medprune.pipeline.setup import _model_kwargs

    class Splits:
        spatial_dims, in_channels, num_classes, image_size = 3, 1, 2, (16, 16, 16)

    config = load_config(overrides={"model.name": "unet3d"})
    kwargs = _model_kwargs(config, Splits(), "segmentation")
    assert "spatial_dims" not in kwargs
    from medprune.models import create_model

    model = create_model("unet3d", **kwargs, depth=2, base_channels=4)
    assert model(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_interleaved_records_keep_going_when_one_backend_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import medprune.measure
    from medprune.pipeline.latency import AA_NAME, interleaved_records

    real = medprune.measure.interleaved_latency

    def onnx_fails(models, x, *, backend, **kw):  # noqa: ANN001, ANN003, ANN202
        if backend == "onnxruntime":
            raise RuntimeError("cannot export")
        return real(models, x, backend=backend, **kw)

    monkeypatch.setattr(medprune.measure, "interleaved_latency", onnx_fails)
    net = torch.nn.Conv2d(1, 2, 3)
    records = interleaved_records(
        {"base": net}, torch.randn(1, 1, 8, 8), threads=1, repeats=3, warmup=0, onnx=True
    )
    torch_rec, onnx_rec = records[:2]
    assert sorted(torch_rec["models"]) == ["base"] and torch_rec["aa_control"]["repeats"] == 3
    assert AA_NAME not in torch_rec["models"] and torch_rec["noise"]["aa_diff_pct"] is not None
    assert onnx_rec == {"kind": "latency", "measure": "onnx_latency_ms",
                        "backend": "onnxruntime", "error": "RuntimeError: cannot export"}  # fmt: skip
