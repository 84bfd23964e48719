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

``--batch 8 --spatial 128`` re-runs the panel at a deployment-sized input (3D models get
``--spatial / 2`` per side; UNETR keeps the image size it was built for): Torch-Pruning's build
runs a real forward pass, whose cost grows with the input, while ``torch.export`` traces with
fake tensors at a cost that depends only on the number of ops.

The latency section times, beside resnet50 and the MONAI tutorial UNet the target names, wider
U-Nets, and explains the gap with a profile: convolution time vs the memory-bound ops (norms,
activations, adds, concatenations, copies), and the throughput of a single 3x3 conv by width.

Usage::

    python benchmarks/engine.py [--models unet2d_prelu,resnet18] [--no-latency] [--size 128]
        [--trials 3] [--threads 2] [--batch 8 --spatial 128] [--no-panel]
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
    # more MONAI networks (tests/graph/test_panel.py has them all)
    "segresnet_ds2d": ("monai.SegResNetDS", dict(spatial_dims=2, init_filters=16, in_channels=1, out_channels=2), (1, 1, 64, 64)),
    "segresnet_vae2d": ("monai.SegResNetVAE", dict(spatial_dims=2, input_image_size=(64, 64), init_filters=8, in_channels=1, out_channels=2), (1, 1, 64, 64)),
    "dynunet2d_deep_supervision": ("monai.DynUNet", dict(spatial_dims=2, in_channels=1, out_channels=2, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2], deep_supervision=True, deep_supr_num=2), (1, 1, 64, 64)),
    "mednext_s2d": ("monai.MedNeXt", dict(spatial_dims=2, in_channels=1, out_channels=2, init_filters=16), (2, 1, 64, 64)),
    "basicunet_plusplus2d": ("monai.BasicUNetPlusPlus", dict(spatial_dims=2, in_channels=1, out_channels=2), (1, 1, 64, 64)),
    "flexible_unet_b0": ("monai.FlexibleUNet", dict(in_channels=1, out_channels=2, backbone="efficientnet-b0", pretrained=False, spatial_dims=2), (1, 1, 64, 64)),
    "ahnet2d": ("monai.AHNet", dict(spatial_dims=2, in_channels=1, out_channels=2, upsample_mode="transpose"), (1, 1, 128, 128)),
    "regunet2d": ("monai.RegUNet", dict(spatial_dims=2, in_channels=2, num_channel_initial=16, depth=3, out_channels=2), (1, 2, 64, 64)),
    "localnet2d": ("monai.LocalNet", dict(spatial_dims=2, in_channels=2, num_channel_initial=16, extract_levels=(0, 1, 2, 3), out_channels=2), (1, 2, 64, 64)),
    "quicknat": ("monai.Quicknat", dict(num_classes=2, num_channels=1, num_filters=32), (2, 1, 64, 64)),
    "autoencoder2d": ("monai.AutoEncoder", dict(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64), strides=(2, 2, 2)), (1, 1, 64, 64)),
    "classifier2d": ("monai.Classifier", dict(in_shape=(1, 64, 64), classes=3, channels=(16, 32, 64), strides=(2, 2, 2)), (2, 1, 64, 64)),
    "vit_classifier": ("monai.ViT", dict(in_channels=1, img_size=(64, 64), patch_size=(16, 16), hidden_size=96, mlp_dim=192, num_layers=2, num_heads=4, spatial_dims=2, classification=True, num_classes=2), (2, 1, 64, 64)),
    "densenet169": ("monai.DenseNet169", dict(spatial_dims=2, in_channels=1, out_channels=2), (2, 1, 64, 64)),
    "seresnet101": ("monai.SEResNet101", dict(spatial_dims=2, in_channels=1, num_classes=2), (2, 1, 64, 64)),
    "efficientnet_b3": ("monai.EfficientNetBN", dict(model_name="efficientnet-b3", spatial_dims=2, in_channels=1, num_classes=2, pretrained=False), (2, 1, 64, 64)),
    "resnet10_3d": ("monai.resnet10", dict(spatial_dims=3, n_input_channels=1, num_classes=2), (1, 1, 32, 32, 32)),
}  # fmt: skip
FIXED_SIZE_NAMES = {"segresnet_vae2d", "vit_classifier"}


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


FIXED_SIZE = {"unetr2d"} | FIXED_SIZE_NAMES  # built for one image size


def panel_shape(name: str, batch: int | None, spatial: int | None) -> tuple[int, ...]:
    """The panel input shape of ``name``, optionally rescaled to ``batch`` and ``spatial``."""
    shape = PANEL[name][2]
    b = batch or shape[0]
    if spatial is None or name in FIXED_SIZE:
        return (b, *shape[1:])
    side = spatial if len(shape) == 4 else max(spatial // 2, 32)
    return (b, shape[1], *([side] * (len(shape) - 2)))


def bench_panel(names, tp, trials=1, batch=None, spatial=None):
    print(
        "| model | medprune build s | prune s | MACs before | MACs after | ok "
        "| TP build s | TP prune s | TP MACs after | TP ok |"
    )
    print("|---" * 10 + "|")
    for name in names:
        reg, kwargs, _ = PANEL[name]
        shape = panel_shape(name, batch, spatial)
        torch.manual_seed(0)
        base = create_model(reg, **kwargs).eval()
        x = torch.randn(*shape)
        with torch.no_grad():
            ref_shapes = _shapes(base(x))
        macs_before = count_macs(base, x)
        row = [f"{name} {tuple(shape)}" if batch or spatial else name]
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


LATENCY_CASES = {
    "resnet50": ("monai.resnet50", dict(spatial_dims=2, n_input_channels=3, num_classes=2), 3),
    "UNet (MONAI tutorial: 16-256, 2 res units)": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2), 1),
    "UNet (MONAI, 32-512, 2 res units)": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), num_res_units=2), 1),
    "BasicUNet (MONAI default 32-32-64-128-256-32)": ("monai.BasicUNet", dict(spatial_dims=2, in_channels=1, out_channels=2), 1),
    "U-Net (medprune unet, 32-512)": ("unet", dict(), 1),
}  # fmt: skip

CONV_OPS = ("convolution", "conv2d", "conv3d", "conv_transpose")
PROFILED_OPS = ("aten::mkldnn_convolution", "aten::_convolution", "aten::native_batch_norm",
                "aten::native_group_norm", "aten::_prelu_kernel", "aten::relu", "aten::relu_",
                "aten::leaky_relu", "aten::leaky_relu_", "aten::add", "aten::add_", "aten::cat",
                "aten::copy_", "aten::max_pool2d_with_indices", "aten::mul", "aten::sigmoid",
                "aten::addmm", "aten::mean")  # fmt: skip


def _profile_ms(model, x, repeats: int) -> tuple[float, float]:
    """(convolution ms, other ms) per forward: self CPU time of the profiled ATen kernels."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                model(x)
    conv = other = 0.0
    for event in prof.key_averages():
        if event.key not in PROFILED_OPS:
            continue
        ms = event.self_cpu_time_total / 1000 / repeats
        if any(c in event.key for c in CONV_OPS):
            conv += ms
        else:
            other += ms
    return conv, other


def bench_latency(size: int, repeats: int, profile_ops: bool = True):
    print(
        "\n| model (batch 8, 2 threads) | MACs before | MACs after | latency before ms "
        "(median / min) | latency after ms (median / min) | latency red. / MACs red. (median; min) |"
    )
    print("|---" * 6 + "|")
    torch.set_num_threads(2)
    profiles = []
    for name, (reg, kwargs, c_in) in LATENCY_CASES.items():
        torch.manual_seed(0)
        base = create_model(reg, **kwargs).eval()
        x = torch.randn(8, c_in, size, size)
        pruned = copy.deepcopy(base)
        graph = build_graph(pruned, x[:1])
        prune_channels(pruned, graph, uniform_plan(graph, 0.5))
        macs0, macs1 = count_macs(base, x), count_macs(pruned, x)
        (med0, min0), (med1, min1) = _interleaved_ms([base, pruned], x, repeats)
        red = 1 - macs1 / macs0
        print(
            f"| {name} | {macs0:,} | {macs1:,} | {med0:.0f} / {min0:.0f} "
            f"| {med1:.0f} / {min1:.0f} | {(1 - med1 / med0) / red:.2f}; {(1 - min1 / min0) / red:.2f} |",
            flush=True,
        )
        if profile_ops:
            profiles.append(
                (
                    name,
                    macs1 / macs0,
                    _profile_ms(base, x, repeats),
                    _profile_ms(pruned, x, repeats),
                )
            )
    if profiles:
        print(
            "\nWhere the time goes (torch.profiler, self CPU ms per forward). Convolutions would "
            "scale with MACs at best; norms, activations, adds, concatenations and copies read and "
            "write every channel once, so they scale with the channel count (0.5) at best."
        )
        print(
            "| model | MACs after / before | conv ms before -> after (ratio) | other ms before -> after (ratio) | other share before |"
        )
        print("|---" * 5 + "|")
        for name, mac_ratio, (c0, o0), (c1, o1) in profiles:
            print(
                f"| {name} | {mac_ratio:.3f} | {c0:.1f} -> {c1:.1f} ({c1 / c0:.2f}) "
                f"| {o0:.1f} -> {o1:.1f} ({o1 / max(o0, 1e-9):.2f}) | {o0 / (c0 + o0):.0%} |",
                flush=True,
            )
        bench_conv_widths(repeats)


def bench_conv_widths(repeats: int) -> None:
    """Throughput of one 3x3 conv (C -> C, batch 8, 64x64, 2 threads) by width C."""
    print("\nOne 3x3 conv C -> C on (8, C, 64, 64), 2 threads: narrow convs run far below peak.")
    print("| C | MMACs | ms (min) | GMAC/s |")
    print("|---|---|---|---|")
    for c in (8, 16, 32, 64, 128):
        conv = torch.nn.Conv2d(c, c, 3, padding=1).eval()
        x = torch.randn(8, c, 64, 64)
        ((_, ms),) = _interleaved_ms([conv], x, max(repeats, 10))
        macs = c * c * 9 * 64 * 64 * 8
        print(f"| {c} | {macs / 1e6:.0f} | {ms:.2f} | {macs / ms / 1e6:.0f} |", flush=True)


def bench_budget_latency(size: int, repeats: int) -> None:
    """Latency removed by a 50% MACs budget (l1 scores, global and uniform plans)."""
    from medprune.criteria import get_criterion
    from medprune.methods import Target
    from medprune.methods.plan import plan_pruning

    print("\n| model (batch 8, 2 threads) | plan | MACs removed | latency removed | ratio |")
    print("|---" * 5 + "|")
    torch.set_num_threads(2)
    for name in ("resnet50", "UNet (MONAI tutorial: 16-256, 2 res units)"):
        reg, kwargs, c_in = LATENCY_CASES[name]
        torch.manual_seed(0)
        base = create_model(reg, **kwargs).eval()
        x = torch.randn(8, c_in, size, size)
        models = [base]
        for scope in ("global", "uniform"):
            model = copy.deepcopy(base)
            graph = build_graph(model, x[:1])
            plan = plan_pruning(graph, get_criterion("l1")(graph), Target(macs=0.5), scope=scope)
            prune_channels(model, graph, plan)
            models.append(model)
        times = _interleaved_ms(models, x, repeats)
        macs0 = count_macs(base, x)
        for scope, model, (ms, _) in zip(("global", "uniform"), models[1:], times[1:], strict=True):
            red = 1 - count_macs(model, x) / macs0
            lat = 1 - ms / times[0][0]
            print(f"| {name} | {scope} | {red:.1%} | {lat:.1%} | {lat / red:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PANEL))
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-panel", action="store_true")
    parser.add_argument("--size", type=int, default=128, help="latency input side")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3, help="panel: fastest of N trials")
    parser.add_argument("--threads", type=int, default=2, help="panel: torch threads")
    parser.add_argument(
        "--batch", type=int, default=None, help="panel: batch size (default: panel's)"
    )
    parser.add_argument("--spatial", type=int, default=None, help="panel: 2D side (3D: half)")
    parser.add_argument("--no-profile", action="store_true", help="latency: skip the breakdown")
    parser.add_argument(
        "--budget", action="store_true", help="also: latency removed by a 50%% MACs budget"
    )
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
        names = [n for n in args.models.split(",") if n]
        bench_panel(names, tp, args.trials, args.batch, args.spatial)
    if not args.no_latency:
        bench_latency(args.size, args.repeats, not args.no_profile)
    if args.budget:
        bench_budget_latency(args.size, args.repeats)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # pragma: no cover
        traceback.print_exc()
        raise
