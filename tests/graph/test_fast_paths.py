"""The engine's fast paths give the same answers as the plain ones.

Tracing without stack traces and with lazy recompilation, the vectorised grouping of components,
``index_select`` gathers and the single-sample check forward after surgery.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx.config as fx_config
from torch import nn

import medprune.graph.grouping as grouping
import medprune.graph.surgery as surgery
from medprune.errors import ShapeMismatchError, TraceError
from medprune.graph import build_graph, prune_channels
from medprune.graph.surgery import _single_sample
from medprune.models import create_model
from medprune.models.inputs import example_input


def _describe(graph):
    return [
        (
            g.key,
            g.n_channels,
            g.prunable,
            g.pinned_reason,
            g.channel_multiple,
            g.zero_exact,
            g.description,
            [(s.module_name, s.tensor_name, s.dim, s.role, s.index.tolist()) for s in g.slices],
            [(a.module_name, a.kind, a.channel_index.tolist()) for a in g.sites],
        )
        for g in graph.groups
    ]


def test_dict_and_vectorised_component_classes_agree(monkeypatch):
    torch.manual_seed(0)
    model = create_model("tiny_unet")
    x = example_input(model)
    fast = _describe(build_graph(model, x))
    defaults = grouping._component_classes.__defaults__
    monkeypatch.setattr(grouping._component_classes, "__defaults__", (0,))  # dict path only
    slow = _describe(build_graph(model, x))
    monkeypatch.setattr(grouping._component_classes, "__defaults__", defaults)
    assert len(fast) > 3 and fast == slow


def test_component_classes_group_by_slices_and_pin():
    # labels 0..5, components: 0={0,1}, 1={2}, 2={3}, 3={4,5}; slice 0 holds labels 0,2,4,
    # slice 1 holds 1,3 -> comp 0 is in slices (0,1), comp 1 in (0,), comp 2 in (1,), comp 3 in (0,)
    comp = torch.tensor([0, 0, 1, 2, 3, 3]).numpy()
    dims = [torch.tensor([0, 2, 4]).numpy(), torch.tensor([1, 3]).numpy()]
    pinned = torch.tensor([False, False, False, True]).numpy()
    for cells in (grouping._MAX_SIGNATURE_CELLS, 0):
        found = grouping._component_classes(comp, dims, pinned, cells)
        assert [(key, comps.tolist()) for key, comps in found] == [
            (((0, 1), False), [0]),
            (((0,), False), [1]),
            (((0,), True), [3]),
            (((1,), False), [2]),
        ]


def test_gather_equals_advanced_indexing():
    torch.manual_seed(0)
    model = create_model("tiny_unet")
    graph = build_graph(model, example_input(model))
    checked = 0
    for group in graph.groups:
        for s in group.slices:
            t = group.tensor(s).detach()
            ref = t.movedim(s.dim, 0)[s.index.reshape(-1)].reshape(group.n_channels, -1)
            got = group.gather(s)
            assert torch.equal(got, ref) and got.is_contiguous()
            assert got.data_ptr() != t.data_ptr()  # a copy, never a view of the parameter
            checked += s.dim
    assert checked > 0  # input-side (dim 1) slices were compared too


def test_tracing_keeps_fx_config():
    before = fx_config.do_not_emit_stack_traces
    model = create_model("tiny_cnn")
    graph = build_graph(model, example_input(model))
    assert graph.prunable_groups()
    assert fx_config.do_not_emit_stack_traces == before
    try:
        build_graph(nn.Conv2d(3, 4, 3), torch.randn(1, 5, 8, 8))
    except TraceError:
        pass
    assert fx_config.do_not_emit_stack_traces == before


class _FixedFlatten(nn.Module):
    """Flattens with a size written in the code: pruning ``conv2`` breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 2)

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        y = nn.functional.adaptive_avg_pool2d(y, 4)
        return self.fc(y.reshape(y.shape[0], 128))


class _Squeezed(nn.Module):
    """Output ``(B, 2)`` for B > 1 but ``(2,)`` for B = 1 (``squeeze``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x))).mean((2, 3)).squeeze()


def test_check_forward_reports_a_model_broken_by_pruning(monkeypatch):
    torch.manual_seed(0)
    model = _FixedFlatten().eval()
    x = torch.randn(2, 1, 8, 8)
    graph = build_graph(model, x)
    group = graph.group_of("conv2")[0]
    batches = _spy_batches(monkeypatch)
    with pytest.raises(ShapeMismatchError, match="no longer runs after pruning.*invalid"):
        prune_channels(model, graph, {group.key: [0]})
    assert batches == [1, 2]  # one sample first; the full input decides and reports


def test_check_forward_uses_one_sample_when_it_settles(monkeypatch):
    torch.manual_seed(0)
    model = create_model("tiny_unet")
    x = example_input(model).repeat(4, *[1] * (example_input(model).dim() - 1))
    graph = build_graph(model, x)
    batches = _spy_batches(monkeypatch)
    prune_channels(model, graph, {g.key: [0] for g in graph.prunable_groups()})
    assert batches == [1]
    with torch.no_grad():
        assert [tuple(model.eval()(x).shape)] == graph.output_shapes


def _spy_batches(monkeypatch) -> list[int]:
    batches: list[int] = []
    real = surgery._output_shapes

    def spy(model, inputs):
        batches.append(int(inputs[0].shape[0]))
        return real(model, inputs)

    monkeypatch.setattr(surgery, "_output_shapes", spy)
    return batches


def test_check_forward_falls_back_to_the_full_batch(monkeypatch):
    torch.manual_seed(0)
    model = _Squeezed().eval()
    x = torch.randn(3, 1, 8, 8)
    graph = build_graph(model, x)
    group = graph.group_of("conv1")[0]
    batches = _spy_batches(monkeypatch)
    step = prune_channels(model, graph, {group.key: [1, 4]})  # batch 1 gives (2,): no error
    assert batches == [1, 3]
    assert step.params_after < step.params_before
    assert model.conv2.in_channels == 6


def test_single_sample_only_for_plainly_batched_inputs():
    x = torch.randn(4, 3, 8, 8)
    one, shapes = _single_sample((x,), [(4, 2)])
    assert one[0].shape == (1, 3, 8, 8) and shapes == [(1, 2)]
    assert _single_sample((x[:1],), [(1, 2)]) is None  # already one sample
    assert _single_sample((x,), [(2,)]) is None  # output not batched
    assert _single_sample((x, torch.randn(2, 3)), [(4, 2)]) is None  # two batch sizes
    assert _single_sample((x,), []) is None
    one, shapes = _single_sample((x, 5), [(4, 2), (4, 1, 8, 8)])
    assert one[1] == 5 and shapes == [(1, 2), (1, 1, 8, 8)]
