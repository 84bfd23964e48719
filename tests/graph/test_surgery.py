"""Surgery: optimizer state, parameters, plans (save / load / replay), costs, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medprune.errors import ConfigError, TraceError
from medprune.graph import PruningPlan, apply_plan, build_graph, prune_channels
from medprune.models import create_model
from medprune.models.inputs import example_input


def _train_step(model, opt, x):
    opt.zero_grad()
    model(x).float().pow(2).mean().backward()
    opt.step()


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_state_is_sliced(kind):
    torch.manual_seed(0)
    model = create_model("tiny_resnet")
    x = example_input(model)
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        state_keys = ["momentum_buffer"]
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        state_keys = ["exp_avg", "exp_avg_sq"]
    _train_step(model, opt, x)
    graph = build_graph(model, x)
    group = graph.prunable_groups()[0]
    s = group.members("out", "weight")[0]
    old_param = group.tensor(s)
    keep = [i for i in range(group.n_channels) if i not in (0, 2)]
    expected = {k: opt.state[old_param][k].index_select(0, s.index[keep, 0]) for k in state_keys}
    prune_channels(model, graph, {group.key: [0, 2]}, optimizer=opt)
    new_param = model.get_submodule(s.module_name).weight
    assert new_param is not old_param and new_param.requires_grad
    assert old_param not in opt.state
    for k in state_keys:
        torch.testing.assert_close(opt.state[new_param][k], expected[k])
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(p) for p in model.parameters()} == in_groups
    _train_step(model, opt, x)  # a step works on the new shapes


def test_requires_grad_is_kept():
    model = create_model("tiny_cnn")
    x = example_input(model)
    first = next(model.parameters())
    first.requires_grad_(False)
    name = next(n for n, p in model.named_parameters() if p is first)
    graph = build_graph(model, x)
    plan = {g.key: [0] for g in graph.prunable_groups()}
    prune_channels(model, graph, plan)
    assert not dict(model.named_parameters())[name].requires_grad


def test_plan_save_load_replay_equals_pruned(tmp_path):
    torch.manual_seed(0)
    base = create_model("tiny_unet")
    x = example_input(base)
    pruned = create_model("tiny_unet")
    pruned.load_state_dict(base.state_dict())
    plan = PruningPlan.for_inputs(pruned, x)
    for step_no in range(2):  # two steps: keys of step 2 refer to the pruned architecture
        graph = build_graph(pruned, x)
        step = {
            g.key: list(range(step_no, g.n_channels, 3))[: g.n_channels // 3]
            for g in graph.prunable_groups()
        }
        plan.add(prune_channels(pruned, graph, step))
    path = plan.save(tmp_path / "plan.json")
    loaded = PruningPlan.load(path)
    assert loaded.steps == plan.steps and loaded.model_class == type(base).__name__
    fresh = create_model("tiny_unet")
    apply_plan(fresh, loaded)
    fresh.load_state_dict(pruned.state_dict())
    pruned.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), pruned(x))
    assert sum(p.numel() for p in fresh.parameters()) < sum(p.numel() for p in base.parameters())


def test_apply_plan_rejects_other_class():
    plan = PruningPlan(steps=[], input_shapes=[[1, 1, 32, 32]], model_class="Other")
    with pytest.raises(ConfigError, match="plan was made for Other"):
        apply_plan(create_model("tiny_cnn"), plan)


def test_estimate_matches_count_macs():
    from medprune.measure import count_macs

    model = create_model("tiny_unet")
    x = example_input(model)
    graph = build_graph(model, x)
    assert graph.estimate().macs == count_macs(model, x)
    plan = {g.key: list(range(g.n_channels // 2)) for g in graph.prunable_groups()}
    est = graph.estimate({k: len(v) for k, v in plan.items()})
    prune_channels(model, graph, plan)
    assert est.macs == count_macs(model, x)
    assert est.params == sum(p.numel() for p in model.parameters())


def test_prune_errors():
    model = create_model("tiny_cnn")
    x = example_input(model)
    graph = build_graph(model, x)
    group = graph.prunable_groups()[0]
    with pytest.raises(ConfigError, match="outside"):
        prune_channels(model, graph, {group.key: [group.n_channels]})
    with pytest.raises(ConfigError, match="must keep at least 1"):
        prune_channels(model, graph, {group.key: list(range(group.n_channels))})
    pinned = next(g for g in graph.groups if not g.prunable)
    with pytest.raises(ConfigError, match="pinned"):
        prune_channels(model, graph, {pinned.key: [0]})


class NeedsTwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


def test_trace_error_names_model_and_hint():
    with pytest.raises(
        TraceError, match="NeedsTwoInputs fails on example inputs.*input of the shape"
    ):
        build_graph(NeedsTwoInputs(), torch.randn(1, 5, 8, 8))
