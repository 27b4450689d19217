"""EFLFCOS: built from YAML; at s = 0 with Detectron2's normaliser its losses and gradients are
Detectron2's FCOS's; bad configs refused; train_net.py end to end. The statistics (layout,
checkpoint, logging) are tested for every EFL detector in test_dense_efl.py."""

import json

import pytest
import torch
from conftest import TINY_INPUT
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.modeling.meta_arch.fcos import FCOS
from tiny_models import cfg_from
from tiny_models import fixed_batched_inputs as batched_inputs
from tiny_models import train_losses

from libra_d2.layers.equalized_focal_loss import EFLClassificationLoss
from libra_d2.modeling.meta_arch import EFLFCOS

FCOS_TINY = "configs/LT-Shapes/fcos_R_18_FPN_tiny.yaml"
EFL_FCOS_TINY = "configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml"
STAT_KEYS = ("efl.statistics.pos_grad", "efl.statistics.neg_grad")
LOSSES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
EFL_ONLY = ("efl", "loss_normalizer", "frequency_groups", "log_period")


def test_registered_and_built_from_config():
    assert META_ARCH_REGISTRY.get("EFLFCOS") is EFLFCOS
    model = build_model(cfg_from(EFL_FCOS_TINY))
    assert isinstance(model, EFLFCOS) and isinstance(model, FCOS)
    assert isinstance(model.efl, EFLClassificationLoss)
    assert (model.efl.gamma_b, model.efl.scale, model.efl.alpha) == (2.0, 8.0, 0.25)
    assert model.loss_normalizer_type == "num_pos" and model.center_sampling_radius == 1.5
    assert model.head_in_features == ["p3", "p4", "p5", "p6", "p7"]
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.head.cls_subnet)  # GN heads
    # P6 from P5 (FCOS), not from C5 (RetinaNet): its input has the FPN's channels
    assert model.backbone.top_block.in_feature == "p5"
    assert model.backbone.top_block.p6.in_channels == 64
    assert set(STAT_KEYS) <= set(model.state_dict())
    assert model.frequency_groups == list(MetadataCatalog.get("lt_shapes_train").category_frequency)
    assert build_model(cfg_from(FCOS_TINY)).efl.scale == 0.0

    with pytest.raises(ValueError, match="IOU_BRANCH / ANCHOR_MATCHER"):
        build_model(cfg_from(EFL_FCOS_TINY, **{"MODEL.EFL.IOU_BRANCH": True}))
    with pytest.raises(ValueError, match="LOSS_NORMALIZER"):
        build_model(cfg_from(EFL_FCOS_TINY, **{"MODEL.EFL.LOSS_NORMALIZER": "mean"}))
    with pytest.raises(ValueError, match="build_fcos_resnet_fpn_backbone"):
        build_model(cfg_from(EFL_FCOS_TINY, **{"MODEL.FCOS.IN_FEATURES": ["p2", "p3"]}))


def test_scale_zero_equals_detectron2_fcos():
    """SCALE 0 with Detectron2's EMA normaliser: the losses and gradients are Detectron2's FCOS's
    (same weights and inputs), step after step, while the statistics are accumulated."""
    cfg = cfg_from(FCOS_TINY, **{"MODEL.EFL.LOSS_NORMALIZER": "ema"})
    torch.manual_seed(0)
    ref_kwargs = {k: v for k, v in EFLFCOS.from_config(cfg).items() if k not in EFL_ONLY}
    ref = FCOS(**ref_kwargs).train()
    ours = EFLFCOS(cfg).train()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert sorted(missing) == sorted(STAT_KEYS) and not unexpected
    inputs = batched_inputs()
    for step in range(2):  # twice: g changes after the first step, the loss must not
        l_ref, s_ref = train_losses(ref, inputs, step)
        l_ours, s_ours = train_losses(ours, inputs, step)
        assert l_ref.keys() == l_ours.keys() == LOSSES
        for key in ("loss_fcos_loc", "loss_fcos_ctr"):
            torch.testing.assert_close(l_ours[key], l_ref[key], rtol=1e-6, atol=0)
        # same value up to fp32 rounding (EFL's fused kernel orders the operations differently)
        torch.testing.assert_close(
            l_ours["loss_fcos_cls"], l_ref["loss_fcos_cls"], rtol=1e-6, atol=0
        )
        assert s_ref["num_pos_anchors"] == s_ours["num_pos_anchors"] > 0
        assert float(ref.loss_normalizer) == pytest.approx(float(ours.loss_normalizer), rel=1e-12)
        if step == 0:
            for m, losses in ((ref, l_ref), (ours, l_ours)):
                m.zero_grad()
                sum(losses.values()).backward()
            for (name, p_ref), p_ours in zip(ref.named_parameters(), ours.parameters()):
                if p_ref.grad is not None:
                    torch.testing.assert_close(
                        p_ours.grad, p_ref.grad, rtol=1e-4, atol=1e-8, msg=name
                    )
            assert ours.efl.statistics.pos_grad.sum() > 0
    assert torch.all(ours.efl.focusing_factors()[0] == 2.0)


def test_train_net_end_to_end(run_script, tmp_path):
    out = tmp_path / "efl_fcos"
    run_script(
        "projects/train_net.py",
        "--config-file",
        EFL_FCOS_TINY,
        "SOLVER.MAX_ITER",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
        *TINY_INPUT,
    )
    with open(out / "metrics.json") as f:
        logged = {k for line in f if line.strip() for k in json.loads(line)}
    assert LOSSES <= logged and "efl/grad_ratio/r" in logged
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert final["efl.statistics.neg_grad"].sum() > 0
