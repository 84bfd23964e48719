"""The panel: MONAI networks (2D and 3D) and the paper nets must prune exactly.

For each model: zero 30-60% of the channels of every prunable group, remove them physically,
compare float64 outputs (rtol 1e-6), run a train-mode forward, and check that a substantial share
of the MACs went away (``max_macs_ratio``). Inputs are the smallest each network accepts.
"""

from __future__ import annotations

import pytest
import torch

from medprune.models import create_model

# name -> (registry name, kwargs, input shape, max MACs ratio after pruning, extra marks)
PANEL = {
    "unet2d_prelu": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2)), (2, 1, 32, 32), 0.5),
    "unet2d_res": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2), num_res_units=2), (2, 1, 32, 32), 0.5),
    "unet3d_res": ("monai.UNet", dict(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1), (1, 1, 16, 16, 16), 0.5),
    "basicunet2d": ("monai.BasicUNet", dict(spatial_dims=2, in_channels=1, out_channels=2, features=(8, 8, 16, 16, 32, 8)), (2, 1, 32, 32), 0.5),
    "basicunet3d": ("monai.BasicUNet", dict(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4)), (1, 1, 32, 32, 32), 0.5),
    "dynunet2d": ("monai.DynUNet", dict(spatial_dims=2, in_channels=1, out_channels=2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[8, 16, 32]), (2, 1, 32, 32), 0.5),
    "dynunet3d_res": ("monai.DynUNet", dict(spatial_dims=3, in_channels=1, out_channels=2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[8, 16, 32], res_block=True), (1, 1, 16, 16, 16), 0.5),
    "attention_unet2d": ("monai.AttentionUnet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2)), (2, 1, 32, 32), 0.5),
    "attention_unet3d": ("monai.AttentionUnet", dict(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2)), (1, 1, 16, 16, 16), 0.5),
    "segresnet2d": ("monai.SegResNet", dict(spatial_dims=2, init_filters=8, in_channels=1, out_channels=2), (2, 1, 32, 32), 0.5),
    "segresnet3d": ("monai.SegResNet", dict(spatial_dims=3, init_filters=8, in_channels=1, out_channels=2), (1, 1, 16, 16, 16), 0.5),
    "vnet3d": ("monai.VNet", dict(spatial_dims=3, in_channels=1, out_channels=2), (2, 1, 16, 16, 16), 0.6),
    "highresnet2d": ("monai.HighResNet", dict(spatial_dims=2, in_channels=1, out_channels=2), (2, 1, 16, 16), 0.6),
    "highresnet3d": ("monai.HighResNet", dict(spatial_dims=3, in_channels=1, out_channels=2), (1, 1, 8, 8, 8), 0.6),
    "densenet121": ("monai.DenseNet121", dict(spatial_dims=2, in_channels=1, out_channels=2, init_features=16, growth_rate=8), (2, 1, 32, 32), 0.5),
    "resnet18": ("monai.resnet18", dict(spatial_dims=2, n_input_channels=1, num_classes=2), (2, 1, 32, 32), 0.5),
    "resnet50_3d": ("monai.resnet50", dict(spatial_dims=3, n_input_channels=1, num_classes=2), (2, 1, 16, 16, 16), 0.5),
    "seresnet50": ("monai.SEResNet50", dict(spatial_dims=2, in_channels=1, num_classes=2), (2, 1, 32, 32), 0.5),
    "seresnext50": ("monai.SEResNeXt50", dict(spatial_dims=2, in_channels=1, num_classes=2), (2, 1, 32, 32), 0.6),
    "efficientnet_b0": ("monai.EfficientNetBN", dict(model_name="efficientnet-b0", spatial_dims=2, in_channels=1, num_classes=2, pretrained=False), (2, 1, 32, 32), 0.5),
    "unetr2d": ("monai.UNETR", dict(in_channels=1, out_channels=2, img_size=(32, 32), feature_size=8, hidden_size=48, mlp_dim=96, num_heads=4, spatial_dims=2), (2, 1, 32, 32), 0.6),
    "swinunetr2d": ("monai.SwinUNETR", dict(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2, depths=(1, 1, 1, 1)), (2, 1, 64, 64), 0.8),
    "vgg16_bn": ("vgg16_bn", dict(), (2, 3, 32, 32), 0.5),
    "resnet56": ("resnet56", dict(), (2, 3, 32, 32), 0.6),
    "unet": ("unet", dict(), (2, 1, 32, 32), 0.5),
    # more MONAI networks: train-only branches (deep supervision, VAE), ConvNeXt-style MedNeXt,
    # registration nets, autoencoders, a ViT classifier (its MLP blocks prune)
    "segresnet_ds2d": ("monai.SegResNetDS", dict(spatial_dims=2, init_filters=8, in_channels=1, out_channels=2), (2, 1, 32, 32), 0.5),
    "segresnet_ds3d": ("monai.SegResNetDS", dict(spatial_dims=3, init_filters=8, in_channels=1, out_channels=2), (1, 1, 16, 16, 16), 0.5),
    "segresnet_vae2d": ("monai.SegResNetVAE", dict(spatial_dims=2, input_image_size=(32, 32), init_filters=8, in_channels=1, out_channels=2), (2, 1, 32, 32), 0.5),
    "dynunet2d_deep_supervision": ("monai.DynUNet", dict(spatial_dims=2, in_channels=1, out_channels=2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[8, 16, 32], deep_supervision=True, deep_supr_num=1), (2, 1, 32, 32), 0.5),
    "mednext_s2d": ("monai.MedNeXt", dict(spatial_dims=2, in_channels=1, out_channels=2, init_filters=8), (2, 1, 32, 32), 0.5),
    "unet2d_groupnorm": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm=("group", {"num_groups": 4})), (2, 1, 32, 32), 0.6),
    "unet2d_batchnorm_relu": ("monai.UNet", dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch", act="relu", dropout=0.1), (2, 1, 32, 32), 0.5),
    "localnet2d": ("monai.LocalNet", dict(spatial_dims=2, in_channels=2, num_channel_initial=8, extract_levels=(0, 1, 2), out_channels=2), (2, 2, 32, 32), 0.5),
    "regunet2d": ("monai.RegUNet", dict(spatial_dims=2, in_channels=2, num_channel_initial=8, depth=2, out_channels=2), (2, 2, 32, 32), 0.5),
    "voxelmorph_unet2d": ("monai.VoxelMorphUNet", dict(spatial_dims=2, in_channels=2, unet_out_channels=8, channels=(8, 16, 16, 16), final_conv_channels=(8, 8)), (2, 2, 32, 32), 0.5),
    "autoencoder2d": ("monai.AutoEncoder", dict(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 16, 32), strides=(2, 2, 2)), (2, 1, 32, 32), 0.5),
    "var_autoencoder2d": ("monai.VarAutoEncoder", dict(spatial_dims=2, in_shape=(1, 32, 32), out_channels=1, latent_size=8, channels=(8, 16), strides=(2, 2)), (2, 1, 32, 32), 0.6),
    "classifier2d": ("monai.Classifier", dict(in_shape=(1, 32, 32), classes=3, channels=(8, 16, 32), strides=(2, 2, 2)), (2, 1, 32, 32), 0.5),
    "quicknat": ("monai.Quicknat", dict(num_classes=2, num_channels=1, num_filters=8), (2, 1, 32, 32), 0.6),
    "resnet10_3d": ("monai.resnet10", dict(spatial_dims=3, n_input_channels=1, num_classes=2), (1, 1, 16, 16, 16), 0.5),
    "vit_classifier": ("monai.ViT", dict(in_channels=1, img_size=(32, 32), patch_size=(8, 8), hidden_size=48, mlp_dim=96, num_layers=2, num_heads=4, spatial_dims=2, classification=True, num_classes=2), (2, 1, 32, 32), 0.9),
}  # fmt: skip

# 3D variants of the classification / transformer nets: correct but slower, so marked `slow`.
SLOW_PANEL = {
    "densenet121_3d": ("monai.DenseNet121", dict(spatial_dims=3, in_channels=1, out_channels=2, init_features=8, growth_rate=4), (2, 1, 32, 32, 32), 0.5),
    "seresnet50_3d": ("monai.SEResNet50", dict(spatial_dims=3, in_channels=1, num_classes=2), (2, 1, 16, 16, 16), 0.5),
    "efficientnet_b0_3d": ("monai.EfficientNetBN", dict(model_name="efficientnet-b0", spatial_dims=3, in_channels=1, num_classes=2, pretrained=False), (1, 1, 32, 32, 32), 0.5),
    "unetr3d": ("monai.UNETR", dict(in_channels=1, out_channels=2, img_size=(16, 16, 16), feature_size=4, hidden_size=48, mlp_dim=96, num_heads=4, spatial_dims=3), (1, 1, 16, 16, 16), 0.7),
    "swinunetr3d": ("monai.SwinUNETR", dict(in_channels=1, out_channels=2, feature_size=12, spatial_dims=3, depths=(1, 1, 1, 1)), (1, 1, 64, 64, 64), 0.8),
    "basicunet_plusplus2d": ("monai.BasicUNetPlusPlus", dict(spatial_dims=2, in_channels=1, out_channels=2, features=(8, 8, 16, 16, 32, 8)), (2, 1, 32, 32), 0.5),
    "mednext_s3d": ("monai.MedNeXt", dict(spatial_dims=3, in_channels=1, out_channels=2, init_filters=4), (2, 1, 32, 32, 32), 0.6),
    "flexible_unet_b0": ("monai.FlexibleUNet", dict(in_channels=1, out_channels=2, backbone="efficientnet-b0", pretrained=False, spatial_dims=2), (2, 1, 64, 64), 0.5),
    "ahnet2d": ("monai.AHNet", dict(spatial_dims=2, in_channels=1, out_channels=2, upsample_mode="transpose"), (2, 1, 128, 128), 0.5),
    "densenet169": ("monai.DenseNet169", dict(spatial_dims=2, in_channels=1, out_channels=2, init_features=16, growth_rate=8), (2, 1, 32, 32), 0.5),
    "seresnet101": ("monai.SEResNet101", dict(spatial_dims=2, in_channels=1, num_classes=2), (2, 1, 32, 32), 0.5),
    "efficientnet_b3": ("monai.EfficientNetBN", dict(model_name="efficientnet-b3", spatial_dims=2, in_channels=1, num_classes=2, pretrained=False), (2, 1, 32, 32), 0.5),
}  # fmt: skip
PANEL.update(SLOW_PANEL)

NEEDS_EINOPS = {"unetr2d", "swinunetr2d", "unetr3d", "swinunetr3d", "vit_classifier"}
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_PANEL else n for n in sorted(PANEL)]


@pytest.mark.parametrize("name", PARAMS)
def test_panel_model_prunes_exactly(name, compare):
    if name in NEEDS_EINOPS:
        pytest.importorskip("einops", reason="MONAI's UNETR / SwinUNETR need einops")
    registry_name, kwargs, shape, max_ratio = PANEL[name]
    torch.manual_seed(0)
    model = create_model(registry_name, **kwargs)
    x = torch.randn(*shape)
    _, old_graph, _, after = compare(model, x, min_groups=1)
    macs_before, macs_after = old_graph.estimate().macs, after.macs
    assert macs_after <= max_ratio * macs_before, (
        f"{name}: MACs {macs_before} -> {macs_after}; pinned: {old_graph.pinned}"
    )
    # every pinned op is reported with a reason; the model's input is always pinned
    assert all(reason for _, reason in old_graph.pinned)
    assert any(where.startswith("input") for where, _ in old_graph.pinned)


@pytest.mark.filterwarnings("ignore:monai.networks.blocks.Warp. Using PyTorch native grid_sample")
def test_voxelmorph_with_two_inputs_prunes_exactly(compare):
    """Registration: (moving, fixed) in, (warped, flow) out; the warping ops are pinned."""
    from monai.networks.nets import VoxelMorph, VoxelMorphUNet

    torch.manual_seed(0)
    backbone = VoxelMorphUNet(spatial_dims=2, in_channels=2, unet_out_channels=8,
                              channels=(8, 16, 16, 16), final_conv_channels=(8, 8))  # fmt: skip
    model = VoxelMorph(backbone=backbone, integration_steps=3, spatial_dims=2)
    x = (torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32))
    _, graph, _, after = compare(model, x, min_groups=3)
    assert after.macs <= 0.6 * graph.estimate().macs
    assert any("grid_sampler" in where for where, _ in graph.pinned)  # warping: reported
