"""LibraRetinaNet: exactly Detectron2's RetinaNet with a Detectron2 box loss type; Balanced L1 /
LGR-L1 when selected; config reading; the tiny Libra RetinaNet config trains end to end."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.modeling.meta_arch import RetinaNet
from detectron2.utils.events import EventStorage
from tiny_models import cfg_from, dense_case
from tiny_models import fixed_batched_inputs as batched_inputs
from tiny_models import train_losses

from libra_d2.layers.balanced_l1 import balanced_l1_loss
from libra_d2.layers.gradient_reweighting import lgr_l1_loss
from libra_d2.modeling.meta_arch import LibraRetinaNet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------- registry / config


def test_registered_and_config():
    assert META_ARCH_REGISTRY.get("LibraRetinaNet") is LibraRetinaNet
    cfg = cfg_from("configs/LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml")
    model = build_model(cfg)
    assert isinstance(model, LibraRetinaNet)
    assert model.box_reg_loss_type == "balanced_l1"
    # the tiny config trains the reference form, as the COCO config (measured better over 3 seeds)
    assert model.balanced_l1 == {"alpha": 0.5, "gamma": 1.5, "beta": 0.11, "form": "reference"}
    assert model.backbone.refine_level == 1  # BFP refined at P4 of P3-P7


def test_missing_libra_config_is_named():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/Base-RetinaNet.yaml"))
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    with pytest.raises(KeyError, match="add_libra_config"):
        LibraRetinaNet(cfg)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("loss_type", ["smooth_l1", "giou"])
def test_equals_detectron2_retinanet(loss_type):
    cfg = cfg_from(
        "configs/LT-Shapes/retinanet_R_18_FPN_tiny.yaml",
        **{
            "MODEL.RETINANET.BBOX_REG_LOSS_TYPE": loss_type,
            "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA": 0.1,
        },
    )
    torch.manual_seed(0)
    ref = RetinaNet(cfg).train()
    ours = LibraRetinaNet(cfg).train()
    ours.load_state_dict(ref.state_dict())
    inputs = batched_inputs()
    for _ in range(2):  # twice: the EMA loss normaliser evolves identically too
        l_ref, s_ref = train_losses(ref, inputs)
        l_ours, s_ours = train_losses(ours, inputs)
        assert l_ref.keys() == l_ours.keys()
        for k in l_ref:
            assert torch.equal(l_ref[k], l_ours[k]), k
        assert s_ref == s_ours and s_ours["num_pos_anchors"] > 0
    assert ref.loss_normalizer == ours.loss_normalizer


@pytest.mark.parametrize(
    "loss_type,fn", [("balanced_l1", balanced_l1_loss), ("lgr_l1", lgr_l1_loss)]
)
def test_libra_box_loss_used_when_selected(loss_type, fn):
    cfg = cfg_from("configs/LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml")
    cfg.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = loss_type
    ours = LibraRetinaNet(cfg)
    plain = RetinaNet(cfg_from("configs/LT-Shapes/retinanet_R_18_FPN_tiny.yaml"))
    anchors, logits, gt_labels, deltas, gt_boxes = case = dense_case(ours.num_classes)
    with EventStorage():
        libra = ours.losses(*case)
        smooth = plain.losses(*case)
    fg = (torch.stack(gt_labels) >= 0) & (torch.stack(gt_labels) != ours.num_classes)
    gt_deltas = torch.stack(
        [ours.box2box_transform.get_deltas(anchors[0].tensor, b) for b in gt_boxes]
    )
    kwargs = {"form": "reference"} if fn is balanced_l1_loss else {}
    hand = fn(deltas[0][fg], gt_deltas[fg], 0.5, 1.5, 0.11, reduction="sum", **kwargs)
    normalizer = 0.9 * 100 + 0.1 * fg.sum().item()  # RetinaNet's EMA, first step
    torch.testing.assert_close(libra["loss_box_reg"], hand / normalizer)
    assert torch.equal(libra["loss_cls"], smooth["loss_cls"])  # everything else is RetinaNet's
    assert not torch.allclose(libra["loss_box_reg"], smooth["loss_box_reg"])


# ----------------------------------------------------------------------------- end to end


def test_tiny_libra_retinanet_config_trains():
    cfg = cfg_from("configs/LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml")
    model = build_model(cfg).train()
    losses, _ = train_losses(model, batched_inputs())
    assert set(losses) == {"loss_cls", "loss_box_reg"} and losses["loss_box_reg"] > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(x).all() for x in grads)
    assert any(p.grad is not None for p in model.backbone.refine.parameters())  # the BFP trains
