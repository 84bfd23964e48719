"""Interleaved latency: several models timed in one run, their repetitions alternating.

Timing models one after the other lets machine load, CPU frequency and cache state drift between
them, so two identical architectures can show different latencies. Here every round runs every
model once, in an order that changes each round, so slow phases of the machine fall on all models
alike; the medians are then comparable and the spread of the runs says how far apart two medians
must be before the difference is real::

    results = interleaved_latency({"base": base, "pruned": pruned}, torch.randn(1, 1, 64, 64),
                                  threads=2, repeats=30)
    results["pruned"].median_ms / results["base"].median_ms
    noise = latency_noise(results)
    noise.describe()  # "median of 30 interleaved runs of 2 models, 2 threads; run-to-run ..."
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.measure._inputs import (
    InputTuple,
    as_input_tuple,
    batch_size_of,
    eval_mode,
    forward_checked,
    place,
    repeat_batch,
)
from medprune.measure.latency import (
    LatencyResult,
    _check_counts,
    _result,
    num_threads,
    ort_session,
    resolve_threads,
)
from medprune.registry import Registry
from medprune.typing import ExampleInputs, PathLike

#: A zero-argument callable that runs one forward pass of one model.
Runner = Callable[[], object]


def round_orders(names: Sequence[str], rounds: int, *, seed: int = 0) -> list[list[str]]:
    """The order the models run in, for each round.

    Rounds come in blocks of ``len(names)``: each block draws a fresh random permutation (seeded)
    and rotates it by one place per round, so within a block every model runs once in every
    position (first, second, ... last) and the neighbours of a model change between blocks.

    Args:
        names: the models.
        rounds: number of rounds.
        seed: seed of the permutations (the same seed gives the same orders).

    Returns:
        ``rounds`` lists, each a permutation of ``names``.
    """
    rng = random.Random(seed)
    k = len(names)
    orders: list[list[str]] = []
    perm = list(names)
    for r in range(rounds):
        if r % k == 0:
            rng.shuffle(perm)
        shift = r % k
        orders.append(perm[shift:] + perm[:shift])
    return orders


def _run_rounds(
    runners: Mapping[str, Runner],
    *,
    warmup: int,
    repeats: int,
    seed: int,
    sync: Callable[[], None],
) -> dict[str, list[float]]:
    """Warm up every model (interleaved), then time ``repeats`` interleaved rounds."""
    names = list(runners)
    for order in round_orders(names, warmup, seed=seed + 1):
        for name in order:
            runners[name]()
    sync()
    times_ms: dict[str, list[float]] = {n: [] for n in names}
    for order in round_orders(names, repeats, seed=seed):
        for name in order:
            start = time.perf_counter()
            runners[name]()
            sync()
            times_ms[name].append((time.perf_counter() - start) * 1e3)
    return times_ms


def _torch_runners(
    stack: contextlib.ExitStack,
    models: Mapping[str, nn.Module | PathLike],
    inputs: InputTuple,
    device: str | torch.device,
    threads: int,
) -> tuple[dict[str, Runner], InputTuple]:
    runners: dict[str, Runner] = {}
    placed = inputs
    stack.enter_context(torch.inference_mode())  # for every timed call, entered once
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"models[{name!r}] must be an nn.Module for backend='torch'; got "
                f"{type(model).__name__}. Pass the module, or use backend='onnxruntime' for "
                "an .onnx file."
            )
        module, placed = place(model, inputs, device)
        stack.enter_context(eval_mode(module))
        forward_checked(module, placed)  # a clear shape error before any timing

        def run(module: nn.Module = module, x: InputTuple = placed) -> object:
            return module(*x)

        runners[name] = run
    return runners, placed


def _onnx_runners(
    stack: contextlib.ExitStack,
    models: Mapping[str, nn.Module | PathLike],
    inputs: InputTuple,
    device: str | torch.device,
    threads: int,
) -> tuple[dict[str, Runner], InputTuple]:
    from medprune.measure.export import export_onnx

    if torch.device(device).type != "cpu":
        raise ConfigError(
            f"backend='onnxruntime' runs on the CPU; got device={str(device)!r}. Use device='cpu'."
        )
    cpu_inputs = tuple(t.detach().cpu() for t in inputs)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medprune-onnx-")))
    runners: dict[str, Runner] = {}
    exported: dict[int, Path] = {}  # one export per module object (an A/A pair shares it)
    for i, (name, model) in enumerate(models.items()):
        if isinstance(model, nn.Module):
            if id(model) not in exported:
                exported[id(model)] = export_onnx(model, cpu_inputs, tmp / f"model_{i}.onnx")
            path = exported[id(model)]
        else:
            path = model
        session, feed = ort_session(path, cpu_inputs, threads=threads)  # created once

        def run(session: Any = session, feed: dict[str, Any] = feed) -> object:
            return session.run(None, feed)

        runners[name] = run
    return runners, cpu_inputs


#: Builds one runner per model inside the run's ExitStack: (stack, models, inputs, device,
#: threads) -> (runners, the inputs as placed).
_Builder = Callable[
    [contextlib.ExitStack, Mapping[str, Any], InputTuple, Any, int],
    tuple[dict[str, Runner], InputTuple],
]
BACKENDS: Registry[_Builder] = Registry("latency backend")
BACKENDS.add("torch", _torch_runners)
BACKENDS.add("onnxruntime", _onnx_runners)


def _backend(name: str) -> _Builder:
    """The runner builder of ``name``; an unknown name suggests the closest (a prefix counts)."""
    if isinstance(name, str) and name not in BACKENDS:
        prefixed = [n for n in BACKENDS if n.startswith(name.lower())] if name else []
        if prefixed:
            raise ConfigError(
                f"Unknown latency backend {name!r}. Did you mean {prefixed[0]!r}? "
                f"Available: {', '.join(BACKENDS)}."
            )
    return BACKENDS.get(name)


def interleaved_latency(
    models: Mapping[str, nn.Module | PathLike],
    example_inputs: ExampleInputs,
    *,
    backend: str = "torch",
    repeats: int = 20,
    warmup: int = 5,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, LatencyResult]:
    """Time several models in one run, alternating their repetitions.

    Every model is warmed up (``warmup`` interleaved rounds, untimed), then ``repeats`` rounds
    run each model once, in an order that changes every round (:func:`round_orders`: no model
    always goes first). Each timed run is one full forward pass on the whole batch; on CUDA the
    device is synchronised after each. Models run in eval mode (restored afterwards) under
    ``torch.inference_mode``; a model on another device is copied there, never moved.

    Args:
        models: name -> ``nn.Module`` (or, for ``backend="onnxruntime"``, an ``.onnx`` path).
            At least one; pass the same module under two names for an A/A check.
        example_inputs: a tensor ``(B, C, *S)`` or a tuple of tensors, shared by every model.
        backend: ``"torch"`` or ``"onnxruntime"`` (each module exported once to a temporary
            ``.onnx`` file, its CPU session created once before any timing).
        repeats: timed rounds (each model runs once per round).
        warmup: untimed rounds before timing.
        threads: intra-op threads (``torch.set_num_threads`` / ``intra_op_num_threads``),
            restored afterwards; None keeps ``torch.get_num_threads()``.
        device: ``"cpu"`` or ``"cuda[:N]"`` (torch backend only).
        batch_size: repeat the examples along dim 0 to this many rows; None keeps ``B``.
        seed: seed of the run orders.

    Returns:
        name -> LatencyResult (``interleaved=True``), in the order of ``models``. Summarise the
        noise of the run with :func:`latency_noise`.

    Raises:
        ConfigError: empty ``models``, unknown ``backend`` (with a did-you-mean), bad
            ``repeats`` / ``warmup`` / ``threads`` / ``device`` / ``batch_size``.
        ShapeMismatchError: a model rejects inputs of this shape.
        TraceError: a model cannot be exported to ONNX.
    """
    build = _backend(backend)
    if not isinstance(models, Mapping) or not models:
        raise ConfigError(
            "models must be a non-empty mapping of name -> model, e.g. "
            f"{{'base': base, 'pruned': pruned}}; got {models!r}."
        )
    _check_counts(warmup, repeats)
    inputs = repeat_batch(as_input_tuple(example_inputs), batch_size)
    with contextlib.ExitStack() as stack:
        used = stack.enter_context(num_threads(resolve_threads(threads)))
        runners, placed = build(stack, models, inputs, device, used)
        dev = placed[0].device
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        times_ms = _run_rounds(runners, warmup=warmup, repeats=repeats, seed=seed, sync=sync)
    meta = dict(
        repeats=repeats,
        warmup=warmup,
        threads=used,
        batch_size=batch_size_of(placed),
        device=str(dev),
        backend=backend,
        interleaved=True,
    )
    return {name: _result(times_ms[name], **meta) for name in models}


@dataclass(frozen=True)
class LatencyNoise:
    """How precise one latency run is: what a difference between two of its medians means.

    Attributes:
        models: models measured.
        repeats: timed runs of each model.
        threads, device, backend: the run's settings.
        interleaved: the repetitions alternated between models.
        spread_pct: run-to-run spread, the median over models of half their p10-p90 range (% of
            their median).
        noise_pct: the largest width of a median's ~95% confidence interval (% of the median):
            two medians closer than this are noise.
        aa_diff_pct: A/A check, when two entries are the same model: how far apart their medians
            came out (% of their mean); None without one.
    """

    models: int
    repeats: int
    threads: int
    device: str
    backend: str
    interleaved: bool
    spread_pct: float
    noise_pct: float
    aa_diff_pct: float | None = None

    def describe(self) -> str:
        """One line for a report, e.g. ``median of 20 interleaved runs of 5 models, 2 threads;
        run-to-run spread ±3.1%; differences below 2.4% are noise``."""
        how = "interleaved runs" if self.interleaved else "runs"
        what = f"of {self.models} models, " if self.models > 1 else ""
        plural = "s" if self.threads != 1 else ""
        text = (
            f"median of {self.repeats} {how} {what}{self.threads} thread{plural}; "
            f"run-to-run spread ±{self.spread_pct:.1f}%; "
            f"differences below {self.noise_pct:.1f}% are noise"
        )
        if self.aa_diff_pct is not None:
            text += f" (A/A check: one model measured twice, {self.aa_diff_pct:.1f}% apart)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def aa_difference_pct(a: LatencyResult, b: LatencyResult) -> float:
    """How far apart two medians are, in % of their mean (the A/A figure)."""
    mean = (a.median_ms + b.median_ms) / 2.0
    return 100.0 * abs(a.median_ms - b.median_ms) / mean


def latency_noise(
    results: Mapping[str, LatencyResult], *, aa: tuple[str, str] | None = None
) -> LatencyNoise:
    """Summarise the noise of one latency run (e.g. of :func:`interleaved_latency`).

    Args:
        results: name -> LatencyResult, all from the same run.
        aa: two names of ``results`` that are the same model (an A/A pair); their medians'
            difference is reported as ``aa_diff_pct``.

    Returns:
        A LatencyNoise; ``.describe()`` gives the line a report prints.

    Raises:
        ConfigError: empty ``results`` or an ``aa`` name not in it.
    """
    if not results:
        raise ConfigError("results must hold at least one LatencyResult; got none.")
    values = list(results.values())
    first = values[0]
    widths = [r.noise_pct for r in values if r.noise_pct is not None]
    aa_pct = None
    if aa is not None:
        missing = [n for n in aa if n not in results]
        if missing:
            raise ConfigError(
                f"aa names {missing} are not in the results; available: {sorted(results)}."
            )
        aa_pct = aa_difference_pct(results[aa[0]], results[aa[1]])
    return LatencyNoise(
        models=len(results),
        repeats=min(r.repeats for r in values),
        threads=first.threads,
        device=first.device,
        backend=first.backend,
        interleaved=all(r.interleaved for r in values),
        spread_pct=statistics.median(r.spread_pct for r in values),
        noise_pct=max(widths) if widths else float("nan"),
        aa_diff_pct=aa_pct,
    )
