"""Bad latency targets and runtimes fail early with clear messages."""

from __future__ import annotations

import pytest
import torch

import medprune
from medprune.errors import ConfigError
from medprune.latency import LatencyOptions, get_runtime
from medprune.methods.base import MethodContext, Target
from medprune.models import create_model


@pytest.mark.parametrize("value", [0, 0.0, 1.0, 1.2, -0.1])
def test_latency_target_outside_open_interval(value: float) -> None:
    with pytest.raises(ConfigError, match=r"latency must be a fraction in \(0, 1\)"):
        Target(latency=value)


def test_exactly_one_target() -> None:
    with pytest.raises(ConfigError, match="exactly one of macs=, params=, ratio=, latency="):
        Target(macs=0.5, latency=0.5)
    assert Target(latency=0.5).kind == "latency" and Target(latency=0.5).value == 0.5


def test_unknown_runtime_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'torch'"):
        LatencyOptions(runtime="tourch")
    with pytest.raises(ConfigError, match="Did you mean 'torch'"):
        get_runtime("tourch")


def test_onnxruntime_on_cuda_is_refused() -> None:
    with pytest.raises(ConfigError, match="CPU execution provider only"):
        LatencyOptions(runtime="onnxruntime", device="cuda")
    with pytest.raises(ConfigError, match="CPU execution provider only"):
        get_runtime("onnxruntime", "cuda:0")


def test_prune_api_rejects_bad_latency_target() -> None:
    model, x = create_model("tiny_cnn"), torch.randn(1, 1, 16, 16)
    with pytest.raises(ConfigError, match=r"\(0, 1\).*got 1.2"):
        medprune.prune(model, x, target_latency=1.2, progress=False)
    with pytest.raises(ConfigError, match="exactly one of"):
        medprune.prune(model, x, target_latency=0.5, target_macs=0.5, progress=False)
    with pytest.raises(ConfigError, match="Did you mean 'onnxruntime'"):
        medprune.prune(model, x, target_latency=0.5, latency_runtime="onnxrunitme")


def test_lottery_refuses_latency_target() -> None:
    from medprune.methods import get_method

    model, x = create_model("tiny_cnn"), torch.randn(1, 1, 16, 16)
    with pytest.raises(ConfigError, match="lottery.*latency"):
        get_method("lottery")(model, x, context=MethodContext(), target=Target(latency=0.5))


def test_latency_needs_global_scope(tmp_path) -> None:
    from latency_fakes import FakeRuntime

    from medprune.criteria import get_criterion
    from medprune.graph import build_graph
    from medprune.methods.plan import plan_pruning

    graph = build_graph(create_model("tiny_cnn"), torch.randn(1, 1, 16, 16))
    opts = LatencyOptions(runtime=FakeRuntime(), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="scope must be 'global'"):
        plan_pruning(
            graph, get_criterion("l1")(graph), Target(latency=0.5), scope="uniform", latency=opts
        )


def test_config_keys() -> None:
    from medprune.config import load_config

    cfg = load_config(None, {"prune.target": "latency", "prune.amount": 0.4,
                             "prune.latency_runtime": "onnxruntime"})  # fmt: skip
    assert (cfg.prune.target, cfg.prune.latency_runtime, cfg.prune.latency_device) == (
        "latency", "onnxruntime", None,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="latency_runtime"):
        load_config(None, {"prune.latency_runtime": "tourch"})
    with pytest.raises(ConfigError, match=r"\(0, 1\) for target: latency"):
        load_config(None, {"prune.target": "latency", "prune.amount": 0.0})


def test_pipeline_refuses_latency_for_other_methods() -> None:
    from types import SimpleNamespace

    from medprune.pipeline.runs import latency_options

    with pytest.raises(ConfigError, match="'sfp' cannot honour prune.target: latency"):
        latency_options(SimpleNamespace(config=None, device="cpu"), "sfp")
