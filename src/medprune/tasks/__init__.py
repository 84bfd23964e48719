"""medprune.tasks: losses, metrics, classification / segmentation tasks and the training loop.

The contract is in ``docs/architecture.md``::

    task = ClassificationTask(2, loss="weighted_ce", class_counts=[900, 100])
    loader = make_loader(train_set, 32, shuffle=True, seed=0)
    result = train(model, task, loader, TrainRecipe(epochs=5), val_loader=val_loader,
                   checkpoint_path="run/ckpt.pt", seed=0)
    metrics = evaluate(model, task, test_loader)   # balanced_accuracy, per_class, ...
"""

from __future__ import annotations

from medprune.tasks.base import Task, create_task, evaluate, split_batch
from medprune.tasks.callbacks import TrainCallback, TrainState
from medprune.tasks.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from medprune.tasks.classification import ClassificationTask
from medprune.tasks.distributed import (
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    is_distributed,
    rank,
    world_size,
)
from medprune.tasks.loaders import EpochSeededSampler, ShardedSampler, make_loader
from medprune.tasks.losses import (
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    check_targets,
    inverse_frequency_weights,
)
from medprune.tasks.metrics import (
    ClassificationMeter,
    SegmentationMeter,
    classification_metrics,
    segmentation_metrics,
)
from medprune.tasks.optim import build_optimizer, build_scheduler
from medprune.tasks.recipe import TrainRecipe
from medprune.tasks.segmentation import SegmentationTask
from medprune.tasks.train import TrainResult, train

__all__ = [
    "ClassificationMeter",
    "ClassificationTask",
    "DiceCELoss",
    "DiceLoss",
    "EpochSeededSampler",
    "FocalLoss",
    "SegmentationMeter",
    "SegmentationTask",
    "ShardedSampler",
    "Task",
    "TrainCallback",
    "TrainRecipe",
    "TrainResult",
    "TrainState",
    "all_gather_objects",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_state",
    "check_targets",
    "classification_metrics",
    "cleanup_distributed",
    "create_task",
    "evaluate",
    "init_distributed",
    "inverse_frequency_weights",
    "is_distributed",
    "load_checkpoint",
    "make_loader",
    "rank",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "segmentation_metrics",
    "split_batch",
    "train",
    "world_size",
]
