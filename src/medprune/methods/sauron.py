"""Sauron (Valverde, Shatillo, Tohka; Neurocomputing 2024): pruning during training, ``"sauron"``.

Every prunable group's block output (its norm site, else its producer) is hooked. Each training
step adds ``lambda_opt * mean_l delta_opt^l`` to the task loss (:func:`clustering_distance`: maps
min-max normalised, average-pooled, RMS distance to channel 0), which pulls a layer's maps into
clusters. At the end of every epoch, each layer's ``delta_prune`` (:func:`prune_distances`:
distance to a random reference map, normalised by the farthest map) is compared with the layer's
threshold ``tau_l``; channels under it (never the reference) are physically removed with
:func:`medprune.graph.prune_channels`, optimiser state included, and training continues on the
smaller, faster model. ``tau_l`` climbs the grid ``linspace(tau_init, tau_max, kappa + 1)`` when the
layer has plateaued (patience ``rho``, removal fraction ``mu``; see :mod:`._sauron_stats`).

Fixes of the reference code (``faithful=False``, default):

* ``delta_prune`` is averaged over all training batches of the epoch with one reference per layer
  drawn at the start of the epoch (the reference uses only the last forward pass);
* the validation-loss clause of the plateau test compares the latest loss with the *previous*
  best (the reference's clause can never block).

``faithful=True`` restores both behaviours. Deliberate differences kept in both modes: 3-D maps
are normalised over all spatial axes, an ``eps`` guards 0/0 and ``sqrt(0)``, ``lambda_opt``
weights the mean over regularised layers (the reference also averages in constant terms of the
output heads: ``lambda_opt = 0.44`` reproduces its effective weight for a 5-level nnU-Net), and the
hook point is the norm output (before the activation) rather than the activation output.

Distributed runs (``torchrun``): statistics and losses are averaged across ranks and rank 0's
decision is broadcast, so every rank removes the same channels.
"""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medprune.errors import ConfigError
from medprune.methods._sauron_stats import (
    LayerSchedule,
    channels_below,
    clustering_distance,
    prune_distances,
    target_reached,
    target_stopper,
    tau_grid,
    update_threshold,
    validate_options,
    warn_short_schedule,
)
from medprune.methods._training import (
    CallbackBase,
    as_target,
    check_guard,
    cost,
    fit,
    require,
    set_guard_reference,
    summary,
    to_device,
    unwrap,
    working_copy,
)
from medprune.methods.base import MethodContext, PruneResult, Target, register_method
from medprune.methods.soft import make_plan

__all__ = ["SauronCallback", "clustering_distance", "prune_distances", "sauron"]


def _dist() -> Any:
    from medprune.tasks import distributed

    return distributed


class SauronCallback(CallbackBase):
    """Adds ``delta_opt`` to the loss and removes channels at the end of every epoch.

    Args:
        graph: pruning graph of the model (rebuilt after each removal).
        example_inputs: ``(B, C, *S)`` batch used to rebuild the graph and count MACs.
        context: the method context (task, val_loader, seed).
        options: the validated options of :func:`sauron`, plus ``stop``: None or
            ``stop(macs, params) -> bool``, True once the target is reached (no more removal).
    """

    def __init__(
        self, graph: Any, example_inputs: Any, context: MethodContext, options: dict
    ) -> None:
        self.graph = graph
        self.example_inputs = example_inputs
        self.context = context
        self.opt = options
        self.grid = tau_grid(options["tau_init"], options["tau_max"], options["kappa"])
        self.layers = {
            g.key: LayerSchedule(tau=options["tau_init"], channels=[g.n_channels])
            for g in graph.prunable_groups()
        }
        self.steps: list[Any] = []
        self.history_: list[dict[str, Any]] = []
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self.stopped = False
        self._handles: list[Any] = []
        self._feats: dict[str, torch.Tensor] = {}
        self._reset_epoch()

    # -- hooks on the block outputs ------------------------------------------------------------
    def _sites(self, group: Any) -> list[Any]:
        norms = [s for s in group.sites if s.kind == "norm"]
        return norms or list(group.sites)

    def attach(self, model: nn.Module) -> None:
        self.detach()
        names = {s.module_name for g in self.graph.prunable_groups() for s in self._sites(g)}
        for name in sorted(names):
            module = model.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if torch.is_tensor(output) and output.dim() >= 3:
                self._feats[name] = output

        return hook

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._feats = {}

    def _features(self, group: Any) -> list[torch.Tensor]:
        out = []
        for s in self._sites(group):
            f = self._feats.get(s.module_name)
            if f is not None:
                out.append(f.index_select(1, s.channel_index.to(f.device)))  # (B, n, *S)
        return out

    def _reference(self, key: str, n: int) -> int:
        if key not in self._refs:
            # deterministic across processes (``hash`` of a str is salted per process)
            salt = zlib.crc32(f"{self.context.seed}/{len(self.history_)}/{key}".encode())
            gen = torch.Generator().manual_seed(salt)
            self._refs[key] = int(torch.randint(n, (1,), generator=gen))
        return self._refs[key]

    def _reset_epoch(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._refs: dict[str, int] = {}

    # -- training hooks ----------------------------------------------------------------------------
    def on_train_start(self, state: Any) -> None:
        self.attach(unwrap(state.model))
        self._reset_epoch()

    def extra_loss(self, state: Any, inputs: Any, targets: Any, outputs: Any) -> Any:
        terms = []
        for group in self.graph.prunable_groups():
            feats = [f for f in self._features(group) if f.shape[1] >= 2]
            if not feats:
                continue
            terms.append(
                torch.stack(
                    [clustering_distance(f, pool_factor=self.opt["pool_factor"]) for f in feats]
                ).mean()
            )
            if not self.opt["faithful"]:
                ref = self._reference(group.key, group.n_channels)
                d = torch.stack(
                    [prune_distances(f, ref, pool_factor=self.opt["pool_factor"]) for f in feats]
                ).mean(0)
                self._sums[group.key] = self._sums.get(group.key, 0) + d.cpu()
                self._counts[group.key] = self._counts.get(group.key, 0) + 1
        if not terms or self.opt["lambda_opt"] == 0.0:
            return None
        return self.opt["lambda_opt"] * torch.stack(terms).mean()

    def on_epoch_end(self, state: Any) -> None:
        dist = _dist()
        model = unwrap(state.model)
        started = time.perf_counter()
        distances = self._epoch_distances()
        # both already averaged over ranks by medprune.tasks.train
        self.train_losses.append(float(state.history[-1]["train_loss"]))
        self.val_losses.append(float((state.val_metrics or {})["loss"]))
        distances = {k: dist.all_reduce_mean(v) for k, v in distances.items()}
        removal, raised = self._decide(distances)
        removal = dist.broadcast_object(removal)
        if removal:
            from medprune.graph import build_graph, prune_channels

            self.steps.append(prune_channels(model, self.graph, removal, optimizer=state.optimizer))
            self.graph = build_graph(model, self.example_inputs, ignore=self.opt["ignore"])
            self.attach(model)
        for group in self.graph.prunable_groups():
            layer = self.layers.setdefault(group.key, LayerSchedule(tau=self.opt["tau_init"]))
            layer.channels.append(group.n_channels)
        macs, params = cost(model, self.example_inputs)
        record = {
            "epoch": len(self.history_),
            "macs": macs,
            "params": params,
            # training + validation time of this epoch as measured by medprune.tasks.train
            "epoch_seconds": float(state.history[-1].get("seconds", float("nan"))),
            "prune_seconds": time.perf_counter() - started,  # statistics, removal, re-tracing
            "train_loss": self.train_losses[-1],
            "val_loss": self.val_losses[-1],
            "removed": {k: int(v.numel()) for k, v in removal.items()},
            "tau_raised": raised,
            "tau": {k: layer.tau for k, layer in self.layers.items()},
            "channels": {g.key: g.n_channels for g in self.graph.prunable_groups()},
        }
        self.history_.append(record)
        self.context.emit({"event": "sauron_epoch", "method": "sauron", **record})
        if self.opt["stop"] is not None and self.opt["stop"](macs, params):
            self.stopped = True
        self._reset_epoch()

    # -- resuming from an epoch checkpoint ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The removals done so far, the threshold schedule and the loss / epoch histories."""
        return {
            "steps": [copy.deepcopy(step.removed) for step in self.steps],
            "layers": {
                k: {"tau": v.tau, "patience": v.patience, "channels": list(v.channels)}
                for k, v in self.layers.items()
            },
            "history": copy.deepcopy(self.history_),
            "train_losses": list(self.train_losses),
            "val_losses": list(self.val_losses),
            "stopped": self.stopped,
        }

    def load_state_dict(self, state_dict: dict[str, Any], model: nn.Module) -> None:
        """Replay the recorded removals on ``model`` (the unpruned starting model), so that the
        checkpoint's smaller weights fit, and restore the schedule."""
        from medprune.graph import build_graph, prune_channels

        model = unwrap(model)
        self.steps = []
        for removed in state_dict["steps"]:
            self.steps.append(prune_channels(model, self.graph, removed))
            self.graph = build_graph(model, self.example_inputs, ignore=self.opt["ignore"])
        self.layers = {
            k: LayerSchedule(
                tau=float(v["tau"]),
                patience=int(v["patience"]),
                channels=[int(c) for c in v["channels"]],
            )
            for k, v in state_dict["layers"].items()
        }
        self.history_ = copy.deepcopy(list(state_dict["history"]))
        self.train_losses = [float(v) for v in state_dict["train_losses"]]
        self.val_losses = [float(v) for v in state_dict["val_losses"]]
        self.stopped = bool(state_dict["stopped"])
        self._reset_epoch()

    # -- decisions ---------------------------------------------------------------------------------
    def _epoch_distances(self) -> dict[str, torch.Tensor]:
        if not self.opt["faithful"]:
            return {k: s / self._counts[k] for k, s in self._sums.items()}
        out = {}
        for group in self.graph.prunable_groups():  # the last forward pass only
            feats = [f.detach() for f in self._features(group) if f.shape[1] >= 2]
            if feats:
                ref = self._reference(group.key, group.n_channels)
                pf = self.opt["pool_factor"]
                out[group.key] = (
                    torch.stack([prune_distances(f, ref, pool_factor=pf) for f in feats])
                    .mean(0)
                    .cpu()
                )
        return out

    def _decide(
        self, distances: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        removal: dict[str, torch.Tensor] = {}
        raised = []
        for group in self.graph.prunable_groups():
            layer = self.layers.setdefault(
                group.key, LayerSchedule(self.opt["tau_init"], channels=[group.n_channels])
            )
            if update_threshold(
                layer, self.grid, self.train_losses, self.val_losses,
                rho=self.opt["rho"], mu=self.opt["mu"], faithful=self.opt["faithful"],
            ):  # fmt: skip
                raised.append(group.key)
            if self.stopped or group.key not in distances:
                continue
            idx = channels_below(
                distances[group.key], layer.tau, self._refs.get(group.key, 0),
                keep_min=max(self.opt["min_channels"], group.min_channels),
                multiple=group.channel_multiple,
            )  # fmt: skip
            if idx.numel():
                removal[group.key] = idx
        return removal, raised


@register_method("sauron")
def sauron(
    model: nn.Module,
    example_inputs: Any,
    *,
    context: MethodContext,
    target: Target | None = None,
    lambda_opt: float = 0.5,
    pool_factor: int = 2,
    tau_init: float = 0.001,
    tau_max: float = 0.3,
    kappa: int = 15,
    rho: int = 5,
    mu: float = 0.02,
    min_channels: int = 1,
    faithful: bool = False,
    respect_target: bool = True,
    ignore: Sequence[str] = (),
) -> PruneResult:
    """Train with Sauron's clustering regulariser and remove channels at every epoch end.

    Args:
        model: model with inputs ``(B, C, *S)`` (2-D or 3-D; classification or segmentation);
            not modified.
        example_inputs: ``(B, C, *S)`` batch for tracing and MACs.
        context: needs ``task``, ``train_loader`` and ``val_loader`` (the plateau test uses the
            validation loss); trains ``context.recipe.epochs`` epochs with its optimiser.
        target: Sauron sets its own sparsity; with ``respect_target`` and a ``macs`` / ``params``
            target, removal stops at the first epoch end where the target is reached (it may
            overshoot within that epoch). ``Target(ratio=...)`` is not enforced.
        lambda_opt: weight of ``delta_opt`` (reference 0.5; 0 = the "Sauron (lambda=0)" ablation).
        pool_factor: average-pooling factor of both distances (reference 2).
        tau_init, tau_max, kappa: threshold grid ``linspace(tau_init, tau_max, kappa + 1)``.
        rho: patience after a raise and the training-loss plateau window (reference 5).
        mu: a layer counts as converged when the previous epoch removed fewer than
            ``ceil(mu * n)`` of its channels (reference 0.02).
        min_channels: fewest channels any layer keeps (besides the protected reference).
        faithful: reproduce the reference's last-batch statistics and inert validation check.
        ignore: module names never pruned.

    Returns:
        PruneResult whose history has one entry per epoch (``macs``, ``params``,
        ``epoch_seconds`` (training + validation), ``prune_seconds``, losses, removed channels
        and thresholds per layer).
    """
    from medprune.graph import build_graph

    target = None if target is None else as_target(target, method="sauron")
    validate_options(
        lambda_opt, pool_factor, tau_init, tau_max, kappa, rho, mu, min_channels, ignore
    )
    require(context, "task", "train_loader", method="sauron")
    if context.val_loader is None:
        raise ConfigError(
            "sauron needs a validation split: its threshold schedule only advances on a "
            "validation-loss plateau; pass MethodContext(val_loader=...)."
        )
    model = working_copy(model, context.device)
    example_inputs = to_device(example_inputs, context.device)
    before = cost(model, example_inputs)
    set_guard_reference(context, model)
    graph = build_graph(model, example_inputs, ignore=tuple(ignore))
    total = sum(g.n_channels for g in graph.prunable_groups())
    stop = target_stopper(target, before) if target and respect_target else None
    options = dict(
        lambda_opt=float(lambda_opt), pool_factor=pool_factor, tau_init=tau_init, tau_max=tau_max,
        kappa=kappa, rho=rho, mu=mu, min_channels=min_channels, faithful=faithful,
        ignore=tuple(ignore), stop=stop,
    )  # fmt: skip
    callback = SauronCallback(graph, example_inputs, context, options)
    settings = {k: v for k, v in options.items() if k != "stop"}
    settings.update(target=target, respect_target=respect_target)
    try:
        fit(
            model,
            context,
            callbacks=[callback],
            val_loader=context.val_loader,
            phase="sauron",
            options=settings,
        )
    finally:
        callback.detach()
    after = cost(model, example_inputs)
    verdict = check_guard(context, model, method="sauron")
    channels_after = sum(g.n_channels for g in callback.graph.prunable_groups())
    reached = target_reached(target, before, after)
    if reached is False:
        warn_short_schedule(target, before, after, len(callback.history_), rho)
    return PruneResult(
        model=model,
        plan=make_plan(model, callback.steps, example_inputs, ignore),
        summary=summary(
            before,
            after,
            channels_before=total,
            channels_after=channels_after,
            epochs=len(callback.history_),
            guard=verdict,
            target_reached=reached,
            final_tau={k: v.tau for k, v in callback.layers.items()},
        ),  # fmt: skip
        history=copy.deepcopy(callback.history_),
        method="sauron",
    )
