"""Streaming statistics over calibration batches: the machinery of every data-driven criterion.

One pass over the calibration loader with forward hooks on the activation sites of all groups
at once (and tensor hooks for gradients). Each hook reduces its feature map to a small running
statistic immediately, so memory is bounded by one batch of activations plus per-site statistics
the size of one feature map, whatever the number of images (this matters for 3D inputs).

Class-aware statistics (medprune's addition to the published criteria). With
``class_aware=True`` every statistic is accumulated separately per class *bucket* and the
per-class scores are combined with ``class_weights``: ``score = sum_c w_c * score_c / sum_c w_c``
over the classes seen in the calibration data. The default weights are equal, so each class
counts the same whatever its frequency: a channel that only fires for the rare class is not
outvoted by the majority. An image's bucket is its label for classification targets ``(B,)``
and, for segmentation targets ``(B, *S)``, its *dominant foreground class*: the non-zero class
with the most pixels in the image, or 0 (background) when no foreground is present. Targets may
come in any form of :mod:`medprune.tasks.targets` (a size-1 channel dim, or one-hot maps).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medprune.criteria.base import Criterion
from medprune.errors import ConfigError, DataError
from medprune.graph.group import ActivationSite, PruningGroup
from medprune.measure.input_size import input_size_error
from medprune.progress import progress_bar
from medprune.tasks.targets import class_indices_like_inputs, targets_for_outputs

logger = logging.getLogger(__name__)

ClassWeights = Sequence[float] | Mapping[int, float] | None


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(inputs, targets or None)`` from a batch: a tuple / list, a dict or a bare tensor."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        x = batch.get("image", batch.get("inputs"))
        y = batch.get("label", batch.get("targets"))
        if x is None:
            raise DataError(f"batch dict needs an 'image' key; got keys {sorted(batch)}.")
        return x, y
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0], batch[1] if len(batch) > 1 else None
    raise DataError(
        f"calibration batches must be (inputs, targets) tuples or input tensors; got "
        f"{type(batch).__name__}."
    )


def first_tensor(outputs: Any) -> torch.Tensor:
    """The main output of a model (first element of a tuple / list, first value of a dict)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, (tuple, list)) and outputs:
        return first_tensor(outputs[0])
    if isinstance(outputs, Mapping) and outputs:
        return first_tensor(next(iter(outputs.values())))
    raise DataError(f"model output must be a tensor; got {type(outputs).__name__}.")


def default_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on ``(B, C)`` logits, or per position on ``(B, C, *S)`` logits; for a
    single-channel output ``(B, 1)`` / ``(B, 1, *S)`` (sigmoid: channel 0 = foreground logit)
    BCE-with-logits against the binary labels.

    ``targets`` in any form of :mod:`medprune.tasks.targets`: class indices ``(B,)`` / ``(B, *S)``,
    the same with a size-1 channel dim, or one-hot ``(B, C)`` / ``(B, C, *S)`` (``C = 2`` for a
    single-channel output).
    """
    indices = targets_for_outputs(outputs, targets)  # (B,) / (B, *S) in [0, C - 1]
    if outputs.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(outputs[:, 0], indices.to(outputs.dtype))
    return F.cross_entropy(outputs, indices)


def image_buckets(
    targets: torch.Tensor | None, inputs: torch.Tensor, *, num_classes: int | None = None
) -> torch.Tensor:
    """Class bucket of each image ``(B,)``: the label, or the dominant foreground class.

    Args:
        targets: any form of :mod:`medprune.tasks.targets` (classification ``(B,)`` / ``(B, 1)``
            / one-hot ``(B, K)``; segmentation ``(B, *S)`` / ``(B, 1, *S)`` / one-hot
            ``(B, K, *S)``).
        inputs: the batch's inputs ``(B, C_in, *S)`` (decide which form ``targets`` has).
        num_classes: the task's class count, if known (one-hot targets must match it).
    """
    if targets is None:
        raise ConfigError(
            "class_aware=True needs labels: the calibration loader must yield (inputs, targets)."
        )
    t = class_indices_like_inputs(inputs, targets.detach(), num_classes=num_classes).cpu()
    if t.dim() == 1:
        return t
    t = t.reshape(t.shape[0], -1)  # (B, prod(S))
    n_cls = int(t.max()) + 1 if t.numel() else 1
    counts = F.one_hot(t.clamp_min(0), max(n_cls, 2)).sum(1)  # (B, K)
    counts[:, 0] = 0
    dominant = counts.argmax(1)
    return torch.where(counts.amax(1) > 0, dominant, torch.zeros_like(dominant))


def sites_of(group: PruningGroup, prefer: str) -> list[ActivationSite]:
    """The sites a criterion hooks: ``prefer="norm"`` -> norm sites if any, else producers."""
    norms = [s for s in group.sites if s.kind == "norm"]
    producers = [s for s in group.sites if s.kind == "producer"]
    chosen = norms if (prefer == "norm" and norms) else producers
    if not chosen:
        chosen = list(group.sites)
    if not chosen:
        raise ConfigError(
            f"group {group.key!r} has no activation site, so data-driven criteria cannot score "
            "it; ignore it or use a weight-only criterion."
        )
    return chosen


class StreamingCriterion(Criterion):
    """Base of data-driven criteria: one streaming pass with hooks on all sites at once.

    Subclasses set ``prefer_site`` (``"norm"`` or ``"producer"``) and implement
    :meth:`observe` (forward statistics) or :meth:`observe_grad` + :meth:`backward` (gradient
    statistics), and :meth:`finalize`.

    Args:
        class_aware: accumulate statistics per class and combine them with ``class_weights``
            (see the module docstring).
        class_weights: weight per class id (sequence indexed by class, or mapping); None = equal.
        max_batches: stop after this many calibration batches (None = the whole loader).
        progress: show a progress bar.
        coupling_norm: see :mod:`medprune.criteria.base`.
        coupling_reduce: see :mod:`medprune.criteria.base`.
    """

    needs_data = True
    prefer_site: ClassVar[str] = "norm"

    def __init__(
        self,
        *,
        class_aware: bool = False,
        class_weights: ClassWeights = None,
        max_batches: int | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
            raise ConfigError(f"max_batches must be an integer >= 1 or None; got {max_batches!r}.")
        if class_weights is not None and not class_aware:
            raise ConfigError("class_weights only apply with class_aware=True; set class_aware.")
        self.class_aware = bool(class_aware)
        self.class_weights = class_weights
        self.max_batches = max_batches
        self.progress = progress

    # -- subclass hooks ------------------------------------------------------------------------
    def observe(self, state: Any, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        """Fold a slice of a batch into ``state`` (None at first); ``x`` module input, ``y`` output."""
        raise NotImplementedError

    def observe_grad(
        self, state: Any, module: nn.Module, a: torch.Tensor, g: torch.Tensor, batch_size: int
    ) -> Any:
        """Fold activations ``a`` and their gradients ``g`` ``(b, C, *S)`` into ``state``."""
        raise NotImplementedError

    def backward(self, outputs: torch.Tensor, targets: torch.Tensor | None, task: Any) -> None:
        """Backpropagate from ``outputs`` (gradient criteria only)."""
        raise NotImplementedError

    def finalize(self, state: Any, module: nn.Module) -> torch.Tensor:
        """Per-output-channel statistic of ``module`` ``(C_out,)`` from its ``state``."""
        raise NotImplementedError

    # -- the pass ------------------------------------------------------------------------------
    def compute(
        self,
        groups: list[PruningGroup],
        model: nn.Module,
        calibration: Iterable[Any] | None,
        task: Any,
    ) -> dict[str, torch.Tensor]:
        if calibration is None:
            raise ConfigError(f"criterion {self.name!r} needs calibration batches.")
        sites = {g.key: sites_of(g, self.prefer_site) for g in groups}
        names = sorted({s.module_name for ss in sites.values() for s in ss})
        states: dict[str, dict[int, Any]] = {n: {} for n in names}
        self._buckets = torch.zeros(0, dtype=torch.long)
        self._probing = False
        self._seen: dict[int, int] = {}
        handles = []
        modes = [(m, m.training) for m in model.modules()]
        grads = [(p, p.requires_grad) for p in model.parameters()]
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model.eval()
        try:
            for name in names:
                module = model.get_submodule(name)
                handles.append(module.register_forward_hook(self._make_hook(name, states)))
            if self.needs_grad:
                for p, _ in grads:
                    p.requires_grad_(False)
            self._run(model, calibration, task, device)
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes:
                m.training = mode
            for p, flag in grads:
                p.requires_grad_(flag)
        if not self._seen:
            raise DataError("the calibration loader yielded no batches.")
        per_module = {
            n: {b: self.finalize(st, model.get_submodule(n)).float() for b, st in states[n].items()}
            for n in names
        }
        return {
            g.key: self.combine(
                [self._combine_classes(per_module[s.module_name], s) for s in sites[g.key]]
            )
            for g in groups
        }

    def _run(self, model: nn.Module, calibration: Iterable[Any], task: Any, device: Any) -> None:
        total = len(calibration) if hasattr(calibration, "__len__") else None  # type: ignore[arg-type]
        if self.max_batches is not None:
            calibration = itertools.islice(calibration, self.max_batches)  # the bar ends there
            total = self.max_batches if total is None else min(total, self.max_batches)
        bar = progress_bar(
            calibration, total=total, desc=self.name, unit="batches", enabled=self.progress
        )
        for batch in bar:
            inputs, targets = split_batch(batch)
            inputs = inputs.to(device)
            targets = targets.to(device) if targets is not None else None
            b = inputs.shape[0]
            self._batch_size = b
            self._buckets = (
                image_buckets(targets, inputs, num_classes=getattr(task, "num_classes", None))
                if self.class_aware
                else torch.zeros(b, dtype=torch.long)
            )
            for c in self._buckets.unique().tolist():
                self._seen[c] = self._seen.get(c, 0) + int((self._buckets == c).sum())
            if self.needs_grad:
                x = inputs.detach().clone().requires_grad_(True)
                with torch.enable_grad():
                    outputs = self._forward(model, x)
                    self.backward(first_tensor(outputs), targets, task)
            else:
                with torch.no_grad():
                    self._forward(model, inputs)

    def _forward(self, model: nn.Module, inputs: torch.Tensor) -> Any:
        """``model(inputs)``; a batch too small for the model's downsampling is one clear error."""
        try:
            return model(inputs)
        except (RuntimeError, ValueError) as e:
            self._probing = True  # the size probe's forwards must not reach the statistics
            try:
                size_error = input_size_error(model, (inputs,), e)
            finally:
                self._probing = False
            if size_error is not None:
                raise size_error from None
            raise

    def _make_hook(self, name: str, states: dict[str, dict[int, Any]]) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if self._probing:
                return None
            y = first_tensor(output)
            if self.needs_grad:
                if not isinstance(output, torch.Tensor) or not y.requires_grad:
                    return None
                # Downstream in-place ops (ReLU(inplace=True)) may overwrite the output, and a
                # hook on a view (InstanceNorm returns one) is lost when the view is modified in
                # place: hand downstream a fresh copy and keep the original for the statistic.
                out = y.clone()
                a = y.detach()
                b = self._batch_size

                def on_grad(g: torch.Tensor) -> None:
                    for c, rows in self._rows():
                        st = states[name].get(c)
                        states[name][c] = self.observe_grad(st, module, a[rows], g[rows], b)

                out.register_hook(on_grad)
                return out
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            for c, rows in self._rows():
                xs = x[rows] if x is not None else None
                states[name][c] = self.observe(states[name].get(c), module, xs, y[rows])
            return None

        return hook

    def _rows(self) -> list[tuple[int, torch.Tensor | slice]]:
        if not self.class_aware:
            return [(0, slice(None))]
        return [(int(c), (self._buckets == c).nonzero()[:, 0]) for c in self._buckets.unique()]

    def _combine_classes(
        self, per_bucket: dict[int, torch.Tensor], site: ActivationSite
    ) -> torch.Tensor:
        if not per_bucket:
            raise DataError(
                f"no statistics were collected at {site.module_name!r}: the module did not run "
                "during the calibration pass (or received no gradient)."
            )
        idx = site.channel_index.long()
        if not self.class_aware:
            return per_bucket[0][idx]
        weights = {c: self._class_weight(c) for c in per_bucket}
        total = sum(weights.values())
        if total <= 0:
            raise ConfigError(f"class_weights sum to {total} over the classes seen; need > 0.")
        return sum(w * per_bucket[c][idx] for c, w in weights.items()) / total

    def _class_weight(self, c: int) -> float:
        cw = self.class_weights
        if cw is None:
            return 1.0
        if isinstance(cw, Mapping):
            return float(cw.get(c, 0.0))
        if c >= len(cw):
            raise ConfigError(
                f"class_weights has {len(cw)} entries but the calibration data contains class {c}."
            )
        return float(cw[c])


def check_task(task: Any) -> None:
    """Refuse a ``task`` that is neither None, a task (with ``.loss``) nor a callable loss."""
    if task is None or callable(getattr(task, "loss", None)) or callable(task):
        return
    raise ConfigError(
        f"task must be a medprune task (with a .loss(outputs, targets) method), a loss callable "
        f"loss(outputs, targets) -> scalar (e.g. monai.losses.DiceLoss(sigmoid=True)) or None "
        f"(the default loss); got a {type(task).__name__}."
    )


def loss_for(
    outputs: torch.Tensor, targets: torch.Tensor | None, task: Any, name: str
) -> torch.Tensor:
    """The loss a gradient criterion backpropagates.

    ``task.loss(outputs, targets)`` for a task; ``task(outputs, targets)`` for a loss callable
    (an ``nn.Module`` loss or a function, given the loader's targets unchanged); else
    :func:`default_loss`.
    """
    if targets is None:
        raise ConfigError(
            f"criterion {name!r} needs labels for its loss gradient; the calibration loader "
            "must yield (inputs, targets)."
        )
    check_task(task)
    if task is None:
        return default_loss(outputs, targets)
    loss = (
        task.loss(outputs, targets)
        if callable(getattr(task, "loss", None))
        else task(outputs, targets)
    )
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ConfigError(
            f"the loss given as task= must return a scalar tensor; got "
            f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}."
            " Use a reduction such as reduction='mean'."
        )
    return loss.reshape(())


def spatial_sum(t: torch.Tensor) -> torch.Tensor:
    """``(b, C, *S)`` -> ``(b, C)`` summed over positions (``(b, C)`` is returned as is)."""
    return t.flatten(2).sum(2) if t.dim() > 2 else t
