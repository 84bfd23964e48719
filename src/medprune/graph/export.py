"""Tracing: the only place in medprune that calls :func:`torch.export.export`.

The model is traced once, in eval mode (its mode is restored afterwards), into the default
pre-dispatch ATen IR. That IR keeps the high-level ops the propagation rules are written for
(``aten.conv2d``, ``aten.linear``, ``aten.batch_norm``, ``aten.instance_norm``,
``aten.group_norm``, ``aten.prelu`` ...) and keeps in-place ops (``aten.relu_``, ``aten.add_``)
as nodes whose *returned* value later users consume, so data flow through ``out += residual`` or
``LeakyReLU(inplace=True)`` is explicit. We do not call ``run_decompositions``: it would lower
``linear`` to ``t + addmm`` and norms to their native kernels, losing the module structure.

Every node carries ``node.meta["val"]`` (a fake tensor whose shape gives the channel counts) and
``node.meta["nn_module_stack"]`` (the module path that issued it). Parameter and buffer
placeholders are mapped back to their dotted names through the graph signature.

Speed: tracing runs with FX stack-trace capture off (``torch.fx.config.do_not_emit_stack_traces``;
the engine never reads ``node.meta["stack_trace"]``, and capturing it symbolises a Python
traceback per node, about a quarter of the export time) and with lazy ``GraphModule``
recompilation (export's passes otherwise regenerate the module's Python code several times; the
engine only reads the graph). Neither changes the graph, its shapes or its module stacks.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medprune.errors import TraceError
from medprune.measure.input_size import input_size_error

__all__ = [
    "ExportedGraph",
    "as_input_tuple",
    "canonical_names",
    "export_model",
    "module_path",
    "train_batch",
]


@dataclass(frozen=True)
class ExportedGraph:
    """A traced model.

    Attributes:
        graph: the FX graph of the exported program (pre-dispatch ATen IR).
        tensor_names: placeholder name -> dotted parameter / buffer name (``"layer1.0.conv1.weight"``).
        parameter_names: the dotted names of parameters (the rest of ``tensor_names`` are buffers
            or lifted constants).
        user_inputs: placeholder names of the model's own inputs, in order.
        input_shapes: shapes of the example inputs.
        model_class: class name of the traced model.
    """

    graph: torch.fx.Graph
    tensor_names: dict[str, str]
    parameter_names: frozenset[str]
    user_inputs: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    model_class: str
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)


def as_input_tuple(example_inputs: Any) -> tuple[Any, ...]:
    """Normalise ``example_inputs`` (a tensor or a sequence of tensors) to a tuple."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, Sequence) and not isinstance(example_inputs, str):
        return tuple(example_inputs)
    raise TraceError(
        f"example_inputs must be a tensor or a tuple of tensors; got {type(example_inputs).__name__}. "
        "Pass e.g. torch.randn(1, 3, 64, 64)."
    )


def train_batch(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """``inputs`` with a batch of 1 doubled: BatchNorm cannot train on one value per channel."""
    return tuple(
        torch.cat([t, t]) if isinstance(t, torch.Tensor) and t.shape[:1] == (1,) else t
        for t in inputs
    )


@contextlib.contextmanager
def _fast_tracing() -> Iterator[None]:
    """Skip work in ``torch.export`` whose results the engine never reads (see module doc)."""
    import torch.fx.config as fx_config

    with contextlib.ExitStack() as stack:
        try:  # private helper of torch.fx; tracing works the same without it
            from torch.fx._lazy_graph_module import _use_lazy_graph_module

            stack.enter_context(_use_lazy_graph_module(True))
        except (ImportError, AttributeError, TypeError):
            pass
        old = getattr(fx_config, "do_not_emit_stack_traces", None)
        if old is not None:
            fx_config.do_not_emit_stack_traces = True
            stack.callback(setattr, fx_config, "do_not_emit_stack_traces", old)
        yield


@contextlib.contextmanager
def _model_attributes_kept(model: nn.Module) -> Iterator[None]:
    """Give every module back the exact attribute objects (and list / dict contents) it had.

    ``torch.export`` may rebind plain attributes during tracing: MONAI's DynUNet shares one
    ``heads`` list between the network and its skip layers, and after an export the two held
    different lists, so deep supervision silently read stale placeholders in train mode.
    """
    warnings.filterwarnings(
        "ignore", message=r"The tensor attributes .* were assigned during export"
    )
    saved = []
    for module in model.modules():
        attrs = {k: v for k, v in vars(module).items() if not k.startswith("_")}
        contents = {
            k: (list(v) if isinstance(v, list) else dict(v))
            for k, v in attrs.items()
            if type(v) in (list, dict)
        }
        saved.append((module, attrs, contents))
    try:
        yield
    finally:
        for module, attrs, contents in saved:
            for k, v in attrs.items():
                if module.__dict__.get(k) is not v:
                    module.__dict__[k] = v
            for k, items in contents.items():
                target = attrs[k]
                if isinstance(target, list):
                    target[:] = items
                else:
                    target.clear()
                    target.update(items)


_SIZE_ERRORS = (RuntimeError, ValueError, IndexError)


@contextlib.contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """Silence fake-tensor's log of a failing op during tracing: the error itself propagates
    (and is reported by :class:`TraceError` or the input-size error), so the log only repeats
    its traceback, 40+ lines on stderr."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def _export(
    model: nn.Module, args: tuple[Any, ...], check_size: bool
) -> torch.export.ExportedProgram:
    shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
    hint = (
        ". Pass an example input of the shape and dtype the model expects (e.g. "
        "torch.randn(1, C, H, W) with H, W divisible by the network's total stride), or add "
        "the offending module to ignore=[...]."
    )
    try:
        with _quiet_fake_tensor_log():
            return torch.export.export(model, args, strict=False)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported as TraceError
        first = e
    try:  # does the model itself run on this input? then only tracing failed
        model(*args)
    except Exception as e:  # noqa: BLE001
        size_error = (
            input_size_error(model, args, e) if check_size and isinstance(e, _SIZE_ERRORS) else None
        )
        if size_error is not None:
            raise size_error from None
        raise TraceError(
            f"{type(model).__name__} fails on example inputs {shapes}: {type(e).__name__}: "
            f"{_first_line(e)}{hint}"
        ) from e
    try:
        return torch.export.export(model, args, strict=True)
    except Exception as e:  # noqa: BLE001
        raise TraceError(
            f"torch.export could not trace {type(model).__name__} with example inputs {shapes}: "
            f"strict=False: {type(first).__name__}: {_first_line(first)}; strict=True: "
            f"{type(e).__name__}: {_first_line(e)}{hint}"
        ) from first


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def export_model(
    model: nn.Module, example_inputs: Any, *, train: bool = False, check_size: bool = False
) -> ExportedGraph:
    """Trace ``model`` once with ``torch.export`` (eval mode unless ``train``, no gradients).

    Tracing runs on fake tensors: the model's buffers (BatchNorm running statistics) are not
    updated, even in train mode.

    Args:
        model: the network; its train/eval mode is restored afterwards.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of model inputs.
        train: trace the train-mode forward (branches such as deep-supervision heads or a VAE
            decoder that only run in training).
        check_size: when the model itself fails on the inputs, probe whether they are too small
            for its downsampling (:mod:`medprune.measure.input_size`; a few forward passes).
            ``build_graph`` sets it for the user's inputs; the engine's internal re-traces of
            pruned copies do not.

    Returns:
        The traced graph with parameter / buffer names.

    Raises:
        TraceError: when ``torch.export`` fails (names the model class and the original error).
        ShapeMismatchError: with ``check_size``, the inputs are too small for the model's
            downsampling (names the smallest size that runs; no chained traceback).
    """
    args = as_input_tuple(example_inputs)
    was_training = model.training
    model.train(train)
    try:
        with (
            torch.no_grad(),
            _fast_tracing(),
            warnings.catch_warnings(),
            _model_attributes_kept(model),
        ):
            program = _export(model, args, check_size)
    finally:
        model.train(was_training)
    sig = program.graph_signature
    canon = canonical_names(model)
    names: dict[str, str] = {}
    names.update(sig.inputs_to_parameters)
    names.update(sig.inputs_to_buffers)
    names = {k: canon.get(v, v) for k, v in names.items()}
    names.update(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    return ExportedGraph(
        graph=program.graph,
        tensor_names=names,
        parameter_names=frozenset(canon.get(v, v) for v in sig.inputs_to_parameters.values()),
        user_inputs=tuple(sig.user_inputs),
        input_shapes=tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else () for a in args),
        model_class=type(model).__name__,
        output_shapes=_output_shapes(program.graph),
    )


def _output_shapes(graph: torch.fx.Graph) -> list[tuple[int, ...]]:
    """Shapes of the tensors the model returns, in order (from the traced output node)."""
    shapes: list[tuple[int, ...]] = []

    def record(a: torch.fx.Node) -> torch.fx.Node:
        v = a.meta.get("val")
        if isinstance(v, torch.Tensor):
            shapes.append(tuple(int(s) for s in v.shape))
        return a

    for node in graph.nodes:
        if node.op == "output":
            torch.fx.node.map_arg(node.args[0], record)  # visits nested lists / dicts in order
    return shapes


def canonical_names(model: nn.Module) -> dict[str, str]:
    """Every dotted name of a parameter / buffer (aliases of shared modules included) -> the name
    ``named_parameters()`` / ``named_buffers()`` report for that tensor."""
    canon: dict[str, str] = {}
    for named in (model.named_parameters, model.named_buffers):
        first = {id(t): n for n, t in named()}
        for n, t in named(remove_duplicate=False):
            canon[n] = first.get(id(t), n)
    return canon


def module_path(node: torch.fx.Node) -> str:
    """Dotted path of the innermost module that issued ``node`` (``""`` for the root)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    path = str(path).split("@")[0]
    if path.startswith("L['self']"):
        path = path[len("L['self']") :].lstrip(".")
    return path
