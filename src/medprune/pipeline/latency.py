"""Latency of the models a run compares, measured interleaved in one pass.

``medprune compare`` and ``medprune prune`` time the base and every pruned model together
(:func:`medprune.measure.interleaved_latency`) once the models exist, instead of each one
separately at a different time, and add an A/A control (a copy of the first model measured as
one more entry). The result is one ``kind: "latency"`` record per backend::

    {"kind": "latency", "measure": "latency_ms", "backend": "torch", "device": "cpu",
     "models": {"base": {... LatencyResult.to_dict() ...}, "l1@0.5#0": {...}},
     "noise": {... LatencyNoise.to_dict() ...}, "note": "median of 20 interleaved runs ..."}

which the report (:func:`medprune.report.records.apply_latency`) puts into the models' records
in place of their own measurement and states as the latency noise line.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medprune.pipeline.setup import RunSetup

logger = logging.getLogger(__name__)

#: Name of the A/A control entry: a deep copy of the first model.
AA_NAME = "A/A copy"


def _passes(onnx: bool) -> list[tuple[str, str, str]]:
    """(record measurement key, backend, device) of every pass to run."""
    out = [("latency_ms", "torch", "cpu")]
    if onnx:
        out.append(("onnx_latency_ms", "onnxruntime", "cpu"))
    if torch.cuda.is_available():
        out.append(("gpu_latency_ms", "torch", "cuda"))
    return out


def interleaved_records(
    models: Mapping[str, nn.Module],
    example_inputs: torch.Tensor,
    *,
    threads: int | None,
    repeats: int,
    warmup: int,
    onnx: bool,
    aa_control: bool = True,
) -> list[dict[str, Any]]:
    """Time ``models`` interleaved: PyTorch CPU, ONNX Runtime CPU (``onnx``) and, when CUDA is
    present, PyTorch GPU; one ``kind: "latency"`` record per backend.

    Args:
        models: record id (``"base"``, a compare cell key) -> model.
        example_inputs: ``(B, C, *S)``, the batch every model is timed on.
        threads: intra-op CPU threads.
        repeats: interleaved rounds (timed runs per model).
        warmup: untimed rounds.
        onnx: also time the models under ONNX Runtime.
        aa_control: add a deep copy of the first model as the entry :data:`AA_NAME`; its
            difference from the first model is the record's ``noise.aa_diff_pct``.

    Returns:
        The latency records (empty for empty ``models``). A pass that fails (a model ONNX cannot
        export, CUDA out of memory) is logged and recorded with its ``error`` instead of
        ``models``, so the run keeps its other results.
    """
    from medprune.measure import interleaved_latency, latency_noise

    if not models:
        return []
    entries = dict(models)
    first = next(iter(entries))
    aa = None
    if aa_control and AA_NAME not in entries:
        entries[AA_NAME] = copy.deepcopy(entries[first])
        aa = (first, AA_NAME)
    records: list[dict[str, Any]] = []
    for key, backend, device in _passes(onnx):
        try:
            results = interleaved_latency(
                entries,
                example_inputs,
                backend=backend,
                device=device,
                threads=threads,
                repeats=repeats,
                warmup=warmup,
            )
        except Exception as e:  # e.g. one model that ONNX cannot export: keep the other passes
            logger.warning("interleaved %s latency (%s) failed: %s", backend, device, e)
            error = f"{type(e).__name__}: {e}"
            records.append({"kind": "latency", "measure": key, "backend": backend, "error": error})
            continue
        noise = latency_noise(results, aa=aa)
        logger.info("%s (%s, %s): %s", key, backend, device, noise.describe())
        records.append(
            {
                "kind": "latency",
                "measure": key,
                "backend": backend,
                "device": results[first].device,
                "models": {name: r.to_dict() for name, r in results.items() if name != AA_NAME},
                "aa_control": results[AA_NAME].to_dict() if aa else None,
                "noise": noise.to_dict(),
                "note": noise.describe(),
            }
        )
    return records


def latency_pass(setup: RunSetup, models: Mapping[str, nn.Module]) -> list[dict[str, Any]]:
    """:func:`interleaved_records` with the run's ``measure`` settings and example batch (none
    when ``measure.latency`` is off)."""
    mc = setup.config.measure
    if not mc.latency:
        return []
    return interleaved_records(
        models,
        setup.example_inputs.cpu(),
        threads=mc.threads,
        repeats=mc.repeats,
        warmup=mc.warmup,
        # a latency target on ONNX Runtime is always reported on it, whatever measure.onnx says
        onnx=mc.onnx or (
            setup.config.prune.target == "latency"
            and setup.config.prune.latency_runtime == "onnxruntime"
        ),
    )
