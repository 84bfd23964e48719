"""Two-process smoke test of distributed training, launched without any script::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m medprune.tasks.ddp_smoke

Every rank trains the same tiny CNN for one epoch on seeded synthetic data (each rank on its own
shard), evaluates it on a sharded validation set, and checks that (a) the weights of all ranks are
bit-identical at the end, (b) every rank got the same validation metrics, and (c) rank 0 wrote
the checkpoint. With ``--prune`` it trains two epochs and physically removes half of the conv
filters in between (rank 0 chooses, :func:`broadcast_object` shares), exercising the re-wrapping of
the pruned model in DistributedDataParallel. Exit status 0 when all hold, 1 otherwise (rank 0 prints a one-line verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import medprune.tasks.distributed as ddp
from medprune.tasks.callbacks import TrainCallback, TrainState
from medprune.tasks.classification import ClassificationTask
from medprune.tasks.loaders import make_loader
from medprune.tasks.recipe import TrainRecipe
from medprune.tasks.train import train


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)  # (N, 1, 8, 8)
    y = (torch.rand(n, generator=g) < 0.25).long()  # (N,) imbalanced labels
    x[y == 1] += 0.5
    return TensorDataset(x, y)


class _PruneHalfOnce(TrainCallback):
    """After the first epoch, physically removes the conv filters with the smallest L1 norm.

    Rank 0 chooses the filters and broadcasts them, so every rank prunes identically.
    """

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch != 0:
            return
        conv, bn, fc = state.model[0], state.model[1], state.model[5]
        scores = conv.weight.detach().abs().flatten(1).sum(1)  # (C_out,)
        keep = ddp.broadcast_object(scores.argsort(descending=True)[: len(scores) // 2].sort()[0])
        with torch.no_grad():
            conv.weight = nn.Parameter(conv.weight[keep].clone())
            conv.bias = nn.Parameter(conv.bias[keep].clone())
            conv.out_channels = len(keep)
            for name in ("weight", "bias"):
                setattr(bn, name, nn.Parameter(getattr(bn, name)[keep].clone()))
            bn.running_mean, bn.running_var = bn.running_mean[keep], bn.running_var[keep]
            bn.num_features = len(keep)
            fc.weight = nn.Parameter(fc.weight[:, keep].clone())
            fc.in_features = len(keep)
        state.rebuild_optimizer = True
        state.history[-1]["channels_after_prune"] = len(keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for the checkpoint (default: temp)")
    parser.add_argument(
        "--prune", action="store_true", help="train 2 epochs, pruning half the filters in between"
    )
    parser.add_argument(
        "--progress", action="store_true", help="show training progress (rank 0 only)"
    )
    args = parser.parse_args(argv)
    device = ddp.init_distributed("cpu")
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else Path(tempfile.gettempdir()) / "medprune-ddp-smoke"
    out = Path(ddp.broadcast_object(str(out)))
    ckpt = out / f"ckpt-{os.environ.get('TORCHELASTIC_RUN_ID', 'local')}.pt"
    torch.manual_seed(ddp.rank())  # deliberately different initial weights: DDP must sync them
    model = _tiny_cnn()
    task = ClassificationTask(2, loss="weighted_ce", class_counts=[3, 1])
    loader = make_loader(_data(64, 0), 8, shuffle=True, seed=0)
    val = make_loader(_data(30, 1), 8, shuffle=False)
    recipe = TrainRecipe(epochs=2 if args.prune else 1, optimizer="sgd", lr=0.05, scheduler="none")
    callbacks = [_PruneHalfOnce()] if args.prune else []
    result = train(
        model,
        task,
        loader,
        recipe,
        val_loader=val,
        checkpoint_path=ckpt,
        callbacks=callbacks,
        device=device,
        progress=args.progress,
    )
    flat = torch.cat(
        [p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()]
    )
    wrote = ckpt.is_file()  # before the gathers below: rank 0 deletes it afterwards
    weights = ddp.all_gather_objects(flat)
    metrics = ddp.all_gather_objects(result.val_metrics)
    same_weights = all(torch.equal(weights[0], w) for w in weights[1:])
    same_metrics = all(m == metrics[0] for m in metrics[1:])
    ok = same_weights and same_metrics and wrote and ddp.world_size() > 1
    if ddp.is_main_process():
        ckpt.unlink(missing_ok=True)
        verdict = {
            "ok": ok,
            "world_size": ddp.world_size(),
            "same_weights": same_weights,
            "same_val_metrics": same_metrics,
            "steps_per_rank": result.history[-1]["steps"],
            "val_n": metrics[0]["n"],
            "train_loss": result.history[-1]["train_loss"],
            "epochs": len(result.history),
            "conv_filters": int(model[0].out_channels),
        }
        print("ddp_smoke " + json.dumps(verdict), flush=True)
    ddp.cleanup_distributed()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
