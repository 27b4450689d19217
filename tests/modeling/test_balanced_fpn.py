"""Balanced Feature Pyramid: the pure function, the non-local block, the Backbone wrapper, the
registered builders, config keys and checkpoint compatibility with Detectron2's FPN."""

import logging
import os
import tempfile

import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import (
    FPN,
    build_resnet_fpn_backbone,
    build_retinanet_resnet_fpn_backbone,
)
from torch import nn

from libra_d2.config import add_libra_config
from libra_d2.layers.non_local import NonLocal2d, embedded_gaussian_attention
from libra_d2.modeling.backbone import (  # importing registers the builders
    BalancedFeaturePyramid,
    balance_features,
    build_resnet_bfp_backbone,
)

INPUT_SHAPE = ShapeSpec(channels=3)


def small_cfg(**bfp):
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    for k, v in bfp.items():
        cfg.MODEL.BFP[k] = v
    return cfg


def images(h=64, w=64, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=g)


# ----------------------------------------------------------------------------- config


def test_config_defaults():
    cfg = get_cfg()
    add_libra_config(cfg)
    assert cfg.MODEL.BFP.REFINE_LEVEL == 2
    assert cfg.MODEL.BFP.REFINE_TYPE == "non_local"
    assert cfg.MODEL.BFP.NON_LOCAL_REDUCTION == 1
    assert cfg.MODEL.BFP.NON_LOCAL_USE_SCALE is False
    assert cfg.MODEL.BFP.NORM == ""
    add_libra_config(cfg)  # idempotent
    assert cfg.MODEL.BFP.REFINE_LEVEL == 2


def test_builder_without_libra_config_has_clear_error():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    with pytest.raises(KeyError, match="add_libra_config"):
        build_resnet_bfp_backbone(cfg, INPUT_SHAPE)


# ----------------------------------------------------------------------------- non-local


@pytest.mark.parametrize("norm", ["", "GN", "BN"])
def test_non_local_is_identity_at_init(norm):
    torch.manual_seed(0)
    block = NonLocal2d(32, reduction=1, use_scale=False, norm=norm)
    block.train()
    x = torch.randn(2, 32, 5, 7)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("use_scale", [True, False])
@pytest.mark.parametrize("reduction", [1, 2])
def test_non_local_matches_hand_computation(use_scale, reduction):
    torch.manual_seed(0)
    block = NonLocal2d(8, reduction=reduction, use_scale=use_scale)
    nn.init.normal_(block.conv_out.weight)  # leave the identity initialisation
    nn.init.normal_(block.conv_out.bias)
    for conv in (block.g, block.theta, block.phi):
        nn.init.normal_(conv.weight, std=0.3)
    x = torch.randn(2, 8, 3, 5)

    ci = 8 // reduction
    # per image, per position i: sum_j softmax_j(theta_i . phi_j * s) g_j, in einsum form
    th = torch.einsum("oc,nchw->nohw", block.theta.weight[:, :, 0, 0], x) + block.theta.bias.view(
        1, -1, 1, 1
    )
    ph = torch.einsum("oc,nchw->nohw", block.phi.weight[:, :, 0, 0], x) + block.phi.bias.view(
        1, -1, 1, 1
    )
    gg = torch.einsum("oc,nchw->nohw", block.g.weight[:, :, 0, 0], x) + block.g.bias.view(
        1, -1, 1, 1
    )
    th, ph, gg = (t.reshape(2, ci, 15) for t in (th, ph, gg))
    logits = torch.einsum("nci,ncj->nij", th, ph)
    if use_scale:
        logits = logits / ci**0.5
    y = torch.einsum("nij,ncj->nci", logits.softmax(-1), gg).reshape(2, ci, 3, 5)
    expected = x + F.conv2d(y, block.conv_out.weight, block.conv_out.bias)

    out = block(x)
    assert not torch.allclose(out, x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    block.use_sdpa = False  # the explicit bmm path gives the same
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_sdpa_and_bmm_paths_agree_with_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 40, 6, requires_grad=True) for _ in range(3))
    a = embedded_gaussian_attention(q, k, v, scale=1.0, use_sdpa=True)
    ga = torch.autograd.grad(a.square().sum(), (q, k, v))
    b = embedded_gaussian_attention(q, k, v, scale=1.0, use_sdpa=False)
    gb = torch.autograd.grad(b.square().sum(), (q, k, v))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- pure function


def test_balance_features_hand_computation_refine_none():
    # 3 levels, 1 channel, refine at the middle level (2x2)
    p0 = torch.arange(16.0).view(1, 1, 4, 4)  # finer: max-pooled down, interpolated back up
    p1 = torch.tensor([[1.0, -2.0], [3.0, 0.0]]).view(1, 1, 2, 2)  # refine level
    p2 = torch.tensor([[6.0]]).view(1, 1, 1, 1)  # coarser: interpolated up, max-pooled back down
    # rescale: max-pool(p0) = [[5, 7], [13, 15]]; p1; nearest(p2) = [[6, 6], [6, 6]]
    # integrate: ([[5, 7], [13, 15]] + [[1, -2], [3, 0]] + [[6, 6], [6, 6]]) / 3
    bsf = torch.tensor([[12.0, 11.0], [22.0, 21.0]]) / 3
    expected0 = p0[0, 0] + bsf.repeat_interleave(2, 0).repeat_interleave(2, 1)
    expected1 = p1[0, 0] + bsf
    expected2 = p2[0, 0] + bsf.max()  # 6 + 22/3

    out = balance_features([p0, p1, p2], refine_level=1, refine_module=None)
    assert [o.shape for o in out] == [p0.shape, p1.shape, p2.shape]
    torch.testing.assert_close(out[0][0, 0], expected0)
    torch.testing.assert_close(out[1][0, 0], expected1)
    torch.testing.assert_close(out[2][0, 0], expected2.view(1, 1))


def test_balance_features_hand_computation_uneven_sizes():
    # width 3 -> 2 -> 3: with integer ratios max-pool up == nearest up, here they differ
    p0 = torch.tensor([1.0, 5.0, 2.0]).view(1, 1, 1, 3)
    p1 = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)  # refine level
    # adaptive max-pool 3 -> 2: bins [0, 2) and [1, 3) -> [5, 5]
    # bsf = ([5, 5] + [1, 3]) / 2 = [3, 4]
    # nearest 2 -> 3 takes indices floor(i * 2 / 3) = [0, 0, 1] -> [3, 3, 4]
    out = balance_features([p0, p1], refine_level=1)
    torch.testing.assert_close(out[0].flatten(), torch.tensor([4.0, 8.0, 6.0]))
    torch.testing.assert_close(out[1].flatten(), torch.tensor([4.0, 7.0]))


def test_balance_features_refine_module_is_applied_to_integrated_feature():
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    seen = []

    def refine(x):
        seen.append(x.shape)
        return torch.ones_like(x)

    out = balance_features(feats, refine_level=1, refine_module=refine)
    assert seen == [torch.Size([2, 4, 4, 4])]
    for f, o in zip(feats, out):
        torch.testing.assert_close(o, f + 1)


def test_balance_features_rejects_bad_level():
    feats = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
    with pytest.raises(ValueError):
        balance_features(feats, refine_level=2)


@pytest.mark.parametrize("refine_level", [0, 2, 4])
def test_balance_features_odd_sizes(refine_level):
    # sizes an unpadded 70x90 image gives at strides 4..64: none divides the next one evenly
    sizes = [(18, 23), (9, 12), (5, 6), (3, 3), (2, 2)]
    feats = [torch.randn(1, 3, h, w) for h, w in sizes]
    out = balance_features(feats, refine_level, NonLocal2d(3))
    assert [tuple(o.shape[-2:]) for o in out] == sizes


# ----------------------------------------------------------------------------- the Backbone


class OddSizeFPN(Backbone):
    """An FPN-like backbone whose levels do not divide evenly (no padding)."""

    def __init__(self, channels=8):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self._out_features = ["p2", "p3", "p4", "p5", "p6"]
        self._out_feature_strides = {f"p{i}": 2**i for i in range(2, 7)}
        self._out_feature_channels = {k: channels for k in self._out_features}

    def forward(self, x):
        y = self.stem(x)
        return {
            f"p{i}": F.adaptive_avg_pool2d(y, (-(-x.shape[2] // 2**i), -(-x.shape[3] // 2**i)))
            for i in range(2, 7)
        }


@pytest.mark.parametrize("refine_type", ["non_local", "conv", "none"])
def test_bfp_wraps_odd_size_backbone(refine_type):
    bfp = BalancedFeaturePyramid(OddSizeFPN(), refine_level=2, refine_type=refine_type)
    x = images(70, 90, n=1)
    ref = bfp.fpn(x)
    out = bfp(x)
    assert list(out) == list(ref)
    for k in ref:
        assert out[k].shape == ref[k].shape
    out["p3"].sum().backward()
    assert bfp.fpn.stem.weight.grad is not None


def _assert_same_interface(bfp, fpn):
    assert bfp.output_shape() == fpn.output_shape()
    assert list(bfp.output_shape()) == list(fpn.output_shape())
    assert bfp._out_features == fpn._out_features
    assert bfp.size_divisibility == fpn.size_divisibility
    assert bfp.padding_constraints == getattr(fpn, "padding_constraints", {})


@pytest.mark.parametrize(
    "name,fpn_builder,names",
    [
        ("build_resnet_bfp_backbone", build_resnet_fpn_backbone, ["p2", "p3", "p4", "p5", "p6"]),
        (
            "build_retinanet_resnet_bfp_backbone",
            build_retinanet_resnet_fpn_backbone,
            ["p3", "p4", "p5", "p6", "p7"],
        ),
    ],
)
def test_registered_bfp_matches_fpn_interface(name, fpn_builder, names):
    cfg = small_cfg()
    if names[0] == "p3":  # RetinaNet: FPN on res3-res5, P6/P7 from res5
        cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.NAME = name
    bfp = build_backbone(cfg)
    assert isinstance(bfp, BalancedFeaturePyramid)
    assert isinstance(bfp.fpn, FPN)
    assert isinstance(bfp.refine, NonLocal2d)
    fpn = fpn_builder(cfg, INPUT_SHAPE)
    _assert_same_interface(bfp, fpn)
    assert list(bfp.output_shape()) == names

    bfp.eval()
    x = images()
    with torch.no_grad():
        out = bfp(x)
        ref = bfp.fpn(x)
    assert list(out) == names
    for k in names:
        assert out[k].shape == ref[k].shape
        assert out[k].shape[-1] == -(-64 // bfp.output_shape()[k].stride)  # ceil
        assert out[k].shape[1] == 32


@pytest.mark.parametrize("refine_level", [0, 2, 4])
def test_bfp_with_identity_non_local_equals_fpn_plus_balanced_residual(refine_level):
    torch.manual_seed(0)
    cfg = small_cfg(REFINE_LEVEL=refine_level)
    bfp = build_resnet_bfp_backbone(cfg, INPUT_SHAPE).eval()
    x = images()
    with torch.no_grad():
        out = bfp(x)
        fpn_out = bfp.fpn(x)
        feats = [fpn_out[k] for k in bfp._out_features]
        expected = balance_features(feats, refine_level, None)
    for k, e, f in zip(bfp._out_features, expected, feats):
        torch.testing.assert_close(out[k], e, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out[k], f)  # the residual is not zero


@pytest.mark.parametrize("refine_type", ["non_local", "conv", "none"])
@pytest.mark.parametrize("norm", ["", "GN"])
def test_refine_types_run_and_backprop(refine_type, norm):
    torch.manual_seed(0)
    cfg = small_cfg(REFINE_TYPE=refine_type, NORM=norm)
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    bfp = build_resnet_bfp_backbone(cfg, INPUT_SHAPE).train()
    out = bfp(images())
    sum(o.square().mean() for o in out.values()).backward()
    assert bfp.fpn.fpn_lateral2.weight.grad.abs().sum() > 0
    assert bfp.fpn.fpn_lateral5.weight.grad.abs().sum() > 0
    assert bfp.fpn.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    if refine_type == "none":
        assert bfp.refine is None
        assert not any(k.startswith("refine.") for k in bfp.state_dict())
    else:
        refine_out = bfp.refine.conv_out if refine_type == "non_local" else bfp.refine
        # at init the non-local output conv (or its norm) is zero: its own weights still learn
        learnable = refine_out.norm.weight if norm else refine_out.weight
        assert learnable.grad is not None and learnable.grad.abs().sum() > 0


def test_bad_refine_type_and_level():
    cfg = small_cfg(REFINE_TYPE="attention")
    with pytest.raises(ValueError):
        build_resnet_bfp_backbone(cfg, INPUT_SHAPE)
    cfg = small_cfg(REFINE_LEVEL=5)
    with pytest.raises(ValueError):
        build_resnet_bfp_backbone(cfg, INPUT_SHAPE)


# ----------------------------------------------------------------------------- checkpoints


class _Model(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(2, 2)


def test_plain_fpn_checkpoint_loads_with_only_refine_keys_missing():
    cfg = small_cfg()
    torch.manual_seed(1)
    fpn_model = _Model(build_resnet_fpn_backbone(cfg, INPUT_SHAPE)).eval()
    torch.manual_seed(2)
    bfp_model = _Model(build_resnet_bfp_backbone(cfg, INPUT_SHAPE)).eval()
    flat = fpn_model.state_dict()
    assert "backbone.fpn_lateral2.weight" in flat
    # the wrapper's own keys carry the "fpn." prefix
    assert "backbone.fpn.fpn_lateral2.weight" in bfp_model.state_dict()
    assert "backbone.fpn.bottom_up.stem.conv1.weight" in bfp_model.state_dict()

    incompatible = bfp_model.load_state_dict(flat, strict=False)
    assert incompatible.unexpected_keys == []
    assert incompatible.missing_keys
    assert all(k.startswith("backbone.refine.") for k in incompatible.missing_keys)
    assert "backbone.fpn_lateral2.weight" in flat  # the caller's dict is not modified

    x = images()
    with torch.no_grad():
        a = fpn_model.backbone(x)
        b = bfp_model.backbone.fpn(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)

    # its own (prefixed) state dict round-trips strictly
    fresh = _Model(build_resnet_bfp_backbone(cfg, INPUT_SHAPE))
    fresh.load_state_dict(bfp_model.state_dict(), strict=True)


def test_detection_checkpointer_loads_fpn_checkpoint_and_imagenet_style_weights(caplog):
    cfg = small_cfg()
    torch.manual_seed(1)
    fpn_model = _Model(build_resnet_fpn_backbone(cfg, INPUT_SHAPE))
    torch.manual_seed(2)
    bfp_model = _Model(build_resnet_bfp_backbone(cfg, INPUT_SHAPE))
    refine_before = {
        k: v.clone() for k, v in bfp_model.state_dict().items() if k.startswith("backbone.refine.")
    }
    assert refine_before
    with tempfile.TemporaryDirectory() as d:
        DetectionCheckpointer(fpn_model, save_dir=d).save("fpn")
        path = os.path.join(d, "fpn.pth")
        with caplog.at_level(logging.INFO):
            DetectionCheckpointer(bfp_model).load(path)
    # every checkpoint key is used (none left over), and only the refine step is not in it
    assert "not used by the model" not in caplog.text
    for k, v in refine_before.items():
        assert torch.equal(bfp_model.state_dict()[k], v), k
    for k, v in fpn_model.state_dict().items():
        target = k.replace("backbone.", "backbone.fpn.", 1) if k.startswith("backbone.") else k
        assert torch.equal(bfp_model.state_dict()[target], v), k

    # ImageNet-style weights of the bottom-up ResNet alone, matched by Detectron2's heuristics
    torch.manual_seed(3)
    resnet_sd = {
        k[len("backbone.bottom_up.") :]: torch.randn_like(v)
        for k, v in fpn_model.state_dict().items()
        if k.startswith("backbone.bottom_up.")
    }
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet.pth")
        torch.save({"model": resnet_sd, "matching_heuristics": True}, path)
        DetectionCheckpointer(bfp_model).load(path)
    w = bfp_model.backbone.fpn.bottom_up.stem.conv1.weight
    assert torch.equal(w, resnet_sd["stem.conv1.weight"])
