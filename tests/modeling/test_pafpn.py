"""PAFPN (FPN + PANet bottom-up path) and Balanced PAFPN as registered Detectron2 backbones."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.fpn import (
    FPN,
    build_resnet_fpn_backbone,
    build_retinanet_resnet_fpn_backbone,
)
from torch import nn

from libra_d2.config import add_libra_config
from libra_d2.modeling.backbone import (  # importing registers the builders
    PAFPN,
    BalancedFeaturePyramid,
    balance_features,
    build_resnet_bpafpn_backbone,
    build_resnet_pafpn_backbone,
)

INPUT_SHAPE = ShapeSpec(channels=3)


RCNN = ["p2", "p3", "p4", "p5", "p6"]
RETINA = ["p3", "p4", "p5", "p6", "p7"]


def small_cfg(retinanet=False):
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = (["res3"] if retinanet else ["res2", "res3"]) + ["res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


def images(h=64, w=64, n=2, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "name,fpn_builder,names,wrapped",
    [
        ("build_resnet_pafpn_backbone", build_resnet_fpn_backbone, RCNN, False),
        (
            "build_retinanet_resnet_pafpn_backbone",
            build_retinanet_resnet_fpn_backbone,
            RETINA,
            False,
        ),
        ("build_resnet_bpafpn_backbone", build_resnet_fpn_backbone, RCNN, True),
        (
            "build_retinanet_resnet_bpafpn_backbone",
            build_retinanet_resnet_fpn_backbone,
            RETINA,
            True,
        ),
    ],
)
def test_registered_pafpn_shapes_match_fpn(name, fpn_builder, names, wrapped):
    cfg = small_cfg(retinanet=names is RETINA)
    cfg.MODEL.BACKBONE.NAME = name
    model = build_backbone(cfg).eval()
    if wrapped:  # Balanced PAFPN = BFP wrapping PAFPN wrapping Detectron2's FPN
        assert isinstance(model, BalancedFeaturePyramid)
        assert isinstance(model.fpn, PAFPN)
        assert isinstance(model.fpn.fpn, FPN)
    else:
        assert isinstance(model, PAFPN) and isinstance(model.fpn, FPN)
    fpn = fpn_builder(cfg, INPUT_SHAPE)
    assert model.output_shape() == fpn.output_shape()
    assert list(model.output_shape()) == names
    assert model.size_divisibility == fpn.size_divisibility
    with torch.no_grad():
        out = model(images())
    assert list(out) == names
    for k in names:
        stride = model.output_shape()[k].stride
        assert out[k].shape == (2, 32, -(-64 // stride), -(-64 // stride))


def test_bottom_up_path_follows_panet_formula():
    torch.manual_seed(0)
    pafpn = build_resnet_pafpn_backbone(small_cfg(), INPUT_SHAPE).eval()
    x = images()
    with torch.no_grad():
        out = pafpn(x)
        p = pafpn.fpn(x)
        n2 = p["p2"]
        n3 = pafpn.pafpn_output3(pafpn.pafpn_downsample3(n2) + p["p3"])
        n4 = pafpn.pafpn_output4(pafpn.pafpn_downsample4(n3) + p["p4"])
        n5 = pafpn.pafpn_output5(pafpn.pafpn_downsample5(n4) + p["p5"])
        n6 = F.max_pool2d(n5, kernel_size=1, stride=2)  # LastLevelMaxPool on the new P5
    assert torch.equal(out["p2"], p["p2"])
    for k, expected in zip(["p3", "p4", "p5", "p6"], [n3, n4, n5, n6]):
        torch.testing.assert_close(out[k], expected, rtol=0, atol=0)
        assert not torch.allclose(out[k], p[k], atol=1e-3), k  # the path is not a no-op


def test_retinanet_pafpn_keeps_p6_p7_from_c5():
    torch.manual_seed(0)
    cfg = small_cfg(retinanet=True)
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_pafpn_backbone"
    pafpn = build_backbone(cfg).eval()
    x = images()
    with torch.no_grad():
        out = pafpn(x)
        p = pafpn.fpn(x)
    assert torch.equal(out["p3"], p["p3"])
    for k in ["p4", "p5"]:
        assert not torch.allclose(out[k], p[k], atol=1e-3)
    for k in ["p6", "p7"]:
        assert torch.equal(out[k], p[k])
    assert not hasattr(pafpn, "pafpn_output3")  # N3 = P3: no conv for the finest level
    assert hasattr(pafpn, "pafpn_output5") and not hasattr(pafpn, "pafpn_output6")


@pytest.mark.parametrize("norm", ["", "GN", "BN"])
def test_pafpn_gradients_flow(norm):
    torch.manual_seed(0)
    cfg = small_cfg()
    cfg.MODEL.FPN.NORM = norm
    pafpn = build_resnet_pafpn_backbone(cfg, INPUT_SHAPE).train()
    if norm:
        assert pafpn.pafpn_downsample3.norm is not None and pafpn.pafpn_downsample3.bias is None
    else:
        assert pafpn.pafpn_downsample3.norm is None and pafpn.pafpn_downsample3.bias is not None
    out = pafpn(images())
    out["p6"].square().mean().backward()  # p6 reaches every level only through the new path
    for module in [
        pafpn.pafpn_downsample3,
        pafpn.pafpn_output3,
        pafpn.pafpn_downsample5,
        pafpn.pafpn_output5,
        pafpn.fpn.fpn_lateral2,
        pafpn.fpn.fpn_output2,
    ]:
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_balanced_pafpn_is_bfp_of_pafpn_outputs():
    torch.manual_seed(0)
    cfg = small_cfg()
    cfg.MODEL.BFP.REFINE_TYPE = "none"
    model = build_resnet_bpafpn_backbone(cfg, INPUT_SHAPE).eval()
    x = images()
    with torch.no_grad():
        out = model(x)
        pa = model.fpn(x)
        expected = balance_features([pa[k] for k in RCNN], 2, None)
    for k, e in zip(RCNN, expected):
        torch.testing.assert_close(out[k], e, rtol=1e-5, atol=1e-6)
    out = model(x)
    sum(v.sum() for v in out.values()).backward()
    assert model.fpn.pafpn_output4.weight.grad.abs().sum() > 0


class _Model(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def test_checkpoints_load_across_fpn_pafpn_and_balanced_pafpn():
    cfg = small_cfg()
    torch.manual_seed(1)
    fpn = _Model(build_resnet_fpn_backbone(cfg, INPUT_SHAPE))
    torch.manual_seed(2)
    pafpn = _Model(build_resnet_pafpn_backbone(cfg, INPUT_SHAPE))
    torch.manual_seed(3)
    bpafpn = _Model(build_resnet_bpafpn_backbone(cfg, INPUT_SHAPE))

    assert "backbone.fpn.fpn_lateral2.weight" in pafpn.state_dict()
    assert "backbone.pafpn_downsample3.weight" in pafpn.state_dict()
    assert "backbone.fpn.fpn.fpn_lateral2.weight" in bpafpn.state_dict()

    # a plain Detectron2 FPN checkpoint: only the new modules are missing
    inc = pafpn.load_state_dict(fpn.state_dict(), strict=False)
    assert inc.unexpected_keys == []
    assert inc.missing_keys and all(k.startswith("backbone.pafpn_") for k in inc.missing_keys)
    assert torch.equal(pafpn.backbone.fpn.fpn_lateral2.weight, fpn.backbone.fpn_lateral2.weight)

    inc = bpafpn.load_state_dict(fpn.state_dict(), strict=False)
    assert inc.unexpected_keys == []
    assert all(
        k.startswith("backbone.fpn.pafpn_") or k.startswith("backbone.refine.")
        for k in inc.missing_keys
    )
    assert torch.equal(
        bpafpn.backbone.fpn.fpn.fpn_lateral2.weight, fpn.backbone.fpn_lateral2.weight
    )

    # a PAFPN checkpoint into Balanced PAFPN: only the refine module is missing
    inc = bpafpn.load_state_dict(pafpn.state_dict(), strict=False)
    assert inc.unexpected_keys == []
    assert inc.missing_keys and all(k.startswith("backbone.refine.") for k in inc.missing_keys)
    assert torch.equal(
        bpafpn.backbone.fpn.pafpn_output4.weight, pafpn.backbone.pafpn_output4.weight
    )
    assert torch.equal(
        bpafpn.backbone.fpn.fpn.bottom_up.stem.conv1.weight,
        pafpn.backbone.fpn.bottom_up.stem.conv1.weight,
    )
    # and its own checkpoint strictly
    _Model(build_resnet_bpafpn_backbone(cfg, INPUT_SHAPE)).load_state_dict(
        bpafpn.state_dict(), strict=True
    )
