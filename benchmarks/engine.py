"""Engine benchmark: medprune vs Torch-Pruning on the panel, and CPU latency vs MACs.

For each panel model: graph build time, prune time (uniform 50% of each prunable group, lowest
L1 first), MACs before / after, success (the pruned model runs and keeps its output shape); the
same for Torch-Pruning (``MagnitudePruner``, ratio 0.5, output layers ignored) when installed
(``pip install --no-deps torch-pruning==1.6.1``). Then the CPU latency (2 threads, batch 8) of
MONAI resnet50 and UNet before / after a uniform 50% pruning, as latency reduction / MACs reduction.

Timing: both tools are first warmed up once on a small model (``torch.export`` pays a one-time
initialisation of a few seconds in a fresh process), then each model is built and pruned
``--trials`` times from a fresh copy, and the fastest trial (least build + prune) is reported:
on a shared machine noise only ever adds time. ``--threads 1`` avoids the large waits two
OpenMP threads suffer on an oversubscribed CPU.

Usage::

    python benchmarks/engine.py [--models unet2d_prelu,resnet18] [--no-latency] [--size 128]
        [--trials 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import traceback

import torch

from medprune.cli.inspect import uniform_plan
from medprune.graph import build_graph, prune_channels
from medprune.measure import count_macs
from medprune.models import create_model

# name -> (registry name, kwargs, input shape)
PANEL = {
    "unet2d_prelu": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128), strides=(2, 2, 2)), (1, 1, 64, 64)),
    "unet2d_res": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2), (1, 1, 64, 64)),
    "unet3d_res": ("monai.UNet", dict(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1), (1, 1, 32, 32, 32)),
    "basicunet2d": ("monai.BasicUNet", dict(spatial_dims=2, in_channels=1, out_channels=2), (1, 1, 64, 64)),
    "dynunet2d": ("monai.DynUNet", dict(spatial_dims=2, in_channels=1, out_channels=2, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2]), (1, 1, 64, 64)),
    "dynunet3d_res": ("monai.DynUNet", dict(spatial_dims=3, in_channels=1, out_channels=2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[16, 32, 64], res_block=True), (1, 1, 32, 32, 32)),
    "attention_unet2d": ("monai.AttentionUnet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128), strides=(2, 2, 2)), (1, 1, 64, 64)),
    "segresnet2d": ("monai.SegResNet", dict(spatial_dims=2, init_filters=16, in_channels=1, out_channels=2), (1, 1, 64, 64)),
    "vnet3d": ("monai.VNet", dict(spatial_dims=3, in_channels=1, out_channels=2), (1, 1, 32, 32, 32)),
    "highresnet2d": ("monai.HighResNet", dict(spatial_dims=2, in_channels=1, out_channels=2), (1, 1, 64, 64)),
    "densenet121": ("monai.DenseNet121", dict(spatial_dims=2, in_channels=1, out_channels=2), (2, 1, 64, 64)),
    "resnet18": ("monai.resnet18", dict(spatial_dims=2, n_input_channels=1, num_classes=2), (2, 1, 64, 64)),
    "resnet50": ("monai.resnet50", dict(spatial_dims=2, n_input_channels=3, num_classes=2), (2, 3, 64, 64)),
    "seresnet50": ("monai.SEResNet50", dict(spatial_dims=2, in_channels=1, num_classes=2), (2, 1, 64, 64)),
    "efficientnet_b0": ("monai.EfficientNetBN", dict(model_name="efficientnet-b0", spatial_dims=2, in_channels=1, num_classes=2, pretrained=False), (2, 1, 64, 64)),
    "unetr2d": ("monai.UNETR", dict(in_channels=1, out_channels=2, img_size=(64, 64), feature_size=16, hidden_size=96, mlp_dim=192, num_heads=4, spatial_dims=2), (1, 1, 64, 64)),
    "swinunetr2d": ("monai.SwinUNETR", dict(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2), (1, 1, 64, 64)),
    "vgg16_bn": ("vgg16_bn", dict(), (2, 3, 32, 32)),
    "resnet56": ("resnet56", dict(), (2, 3, 32, 32)),
    "unet": ("unet", dict(), (1, 1, 64, 64)),
}  # fmt: skip


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return [tuple(out.shape)]
    return [tuple(t.shape) for t in out if isinstance(t, torch.Tensor)]


def run_medprune(model, x):
    t0 = time.perf_counter()
    graph = build_graph(model, x)
    t1 = time.perf_counter()
    plan = uniform_plan(graph, 0.5)
    prune_channels(model, graph, plan)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, graph


def run_torch_pruning(tp, model, x, output_modules):
    ignored = [m for n, m in model.named_modules() if n in output_modules]
    t0 = time.perf_counter()
    pruner = tp.pruner.MagnitudePruner(
        model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
        ignored_layers=ignored,
    )  # fmt: skip
    t1 = time.perf_counter()
    pruner.step()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _fastest(run, base, trials, *args):
    """Run ``run(model, *args)`` on ``trials`` fresh copies of ``base``; the (model, result) of
    the trial with the least build + prune time (result[0] + result[1])."""
    best = None
    for _ in range(max(trials, 1)):
        model = copy.deepcopy(base)
        result = run(model, *args)
        if best is None or result[0] + result[1] < best[1][0] + best[1][1]:
            best = (model, result)
    return best


def warm_up(tp):
    """Pay each tool's one-time initialisation (imports, kernel registration) before timing."""
    reg, kwargs, shape = PANEL["resnet18"]
    torch.manual_seed(0)
    base = create_model(reg, **kwargs).eval()
    x = torch.randn(*shape)
    run_medprune(copy.deepcopy(base), x)
    if tp is not None:
        try:
            run_torch_pruning(tp, copy.deepcopy(base), x, {"fc"})
        except Exception:  # noqa: BLE001 - only a warm-up
            pass


def bench_panel(names, tp, trials=1):
    print(
        "| model | medprune build s | prune s | MACs before | MACs after | ok "
        "| TP build s | TP prune s | TP MACs after | TP ok |"
    )
    print("|---" * 10 + "|")
    for name in names:
        reg, kwargs, shape = PANEL[name]
        torch.manual_seed(0)
        base = create_model(reg, **kwargs).eval()
        x = torch.randn(*shape)
        with torch.no_grad():
            ref_shapes = _shapes(base(x))
        macs_before = count_macs(base, x)
        row = [name]
        outputs: set[str] = set()
        try:
            model, (build_s, prune_s, graph) = _fastest(run_medprune, base, trials, x)
            outputs = {
                s.module_name
                for g in graph.groups
                if (g.pinned_reason or "").startswith("model output")
                for s in g.members("out")
            }
            with torch.no_grad():
                ok = _shapes(model.eval()(x)) == ref_shapes
            row += [
                f"{build_s:.2f}",
                f"{prune_s:.2f}",
                f"{macs_before:,}",
                f"{count_macs(model, x):,}",
                "yes" if ok else "NO",
            ]
        except Exception as e:  # noqa: BLE001 - the benchmark reports failures
            row += ["-", "-", f"{macs_before:,}", "-", f"FAIL {type(e).__name__}"]
        if tp is None:
            row += ["n/a"] * 4
        else:
            try:
                model, (build_s, prune_s) = _fastest(
                    lambda m, *a: run_torch_pruning(tp, m, *a), base, trials, x, outputs
                )
                with torch.no_grad():
                    ok = _shapes(model.eval()(x)) == ref_shapes
                row += [
                    f"{build_s:.2f}",
                    f"{prune_s:.2f}",
                    f"{count_macs(model, x):,}",
                    "yes" if ok else "NO (shape)",
                ]
            except Exception as e:  # noqa: BLE001
                row += ["-", "-", "-", f"FAIL {type(e).__name__}: {str(e)[:60]}"]
        print("| " + " | ".join(row) + " |", flush=True)


def _interleaved_ms(models, x, repeats):
    """Time the models alternately (same load conditions); returns per model (median, min) ms."""
    times = [[] for _ in models]
    with torch.inference_mode():
        for m in models:
            m(x)
        for _ in range(repeats):
            for i, m in enumerate(models):
                t0 = time.perf_counter()
                m(x)
                times[i].append((time.perf_counter() - t0) * 1000)
    return [(statistics.median(t), min(t)) for t in times]


def bench_latency(size: int, repeats: int):
    cases = {
        "resnet50": ("monai.resnet50", dict(spatial_dims=2, n_input_channels=3, num_classes=2), (8, 3, size, size)),
        "UNet": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2), (8, 1, size, size)),
    }  # fmt: skip
    print(
        "\n| model (batch 8, 2 threads) | MACs before | MACs after | latency before ms "
        "(median / min) | latency after ms (median / min) | latency red. / MACs red. (median; min) |"
    )
    print("|---" * 6 + "|")
    torch.set_num_threads(2)
    for name, (reg, kwargs, shape) in cases.items():
        torch.manual_seed(0)
        base = create_model(reg, **kwargs).eval()
        x = torch.randn(*shape)
        pruned = copy.deepcopy(base)
        graph = build_graph(pruned, x[:1])
        prune_channels(pruned, graph, uniform_plan(graph, 0.5))
        macs0, macs1 = count_macs(base, x), count_macs(pruned, x)
        (med0, min0), (med1, min1) = _interleaved_ms([base, pruned], x, repeats)
        red = 1 - macs1 / macs0
        print(
            f"| {name} {tuple(shape)} | {macs0:,} | {macs1:,} | {med0:.0f} / {min0:.0f} "
            f"| {med1:.0f} / {min1:.0f} | {(1 - med1 / med0) / red:.2f}; {(1 - min1 / min0) / red:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PANEL))
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-panel", action="store_true")
    parser.add_argument("--size", type=int, default=128, help="latency input side")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3, help="panel: fastest of N trials")
    parser.add_argument("--threads", type=int, default=2, help="panel: torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import torch_pruning as tp
    except ImportError:
        tp = None
        print("note: torch_pruning not installed; its columns are n/a")
    if not args.no_panel:
        warm_up(tp)
        print(f"(fastest of {args.trials} trials, {args.threads} threads, after a warm-up)")
        bench_panel([n for n in args.models.split(",") if n], tp, args.trials)
    if not args.no_latency:
        bench_latency(args.size, args.repeats)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # pragma: no cover
        traceback.print_exc()
        raise
