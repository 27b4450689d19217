"""LibraRPN: exactly Detectron2's RPN with the Libra options off; balanced sampling and Balanced L1
when on; config reading; the tiny Libra RPN config trains end to end."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import (
    PROPOSAL_GENERATOR_REGISTRY,
    RPN,
    build_proposal_generator,
)
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from libra_d2.config import add_libra_config
from libra_d2.layers.balanced_l1 import balanced_l1_loss
from libra_d2.modeling.matcher import MaxIoUMatcher
from libra_d2.modeling.proposal_generator import LibraRPN
from libra_d2.modeling.sampling import LibraSamplingConfig
from libra_d2.utils.events import flush_deferred_scalars

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
CHANNELS = 64  # Base-Tiny's FPN
SHAPES = {k: ShapeSpec(channels=CHANNELS, stride=s) for k, s in STRIDES.items()}


def tiny_cfg():
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/LT-Shapes/Base-Tiny.yaml"))
    return cfg


def pair(cfg, **libra_kwargs):
    """Detectron2's RPN and a LibraRPN with the same weights."""
    torch.manual_seed(0)
    ref = RPN(cfg, SHAPES)
    ours = LibraRPN(cfg, SHAPES, **libra_kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref.train(), ours.train()


def gt_instances(size, boxes_per_image):
    out = []
    for boxes in boxes_per_image:
        inst = Instances(size)
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.zeros(len(inst.gt_boxes), dtype=torch.int64)
        out.append(inst)
    return out


def inputs(size=64, seed=0):
    """(images, features, gt) for two size x size images with a few GT boxes."""
    g = torch.Generator().manual_seed(seed)
    feats = {
        k: torch.randn(2, CHANNELS, size // s, size // s, generator=g) for k, s in STRIDES.items()
    }
    images = ImageList(torch.zeros(2, 3, size, size), [(size, size), (size, size - 4)])
    gt = gt_instances(
        (size, size), [[[4, 6, 30, 40], [20, 10, 60, 50], [40, 40, 56, 60]], [[10, 12, 50, 44]]]
    )
    return images, feats, gt


def run(model, images, feats, gt, seed=0):
    torch.manual_seed(seed)
    with EventStorage() as storage:
        proposals, losses = model(images, feats, gt)
        flush_deferred_scalars(storage)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    return proposals, losses, scalars


# ----------------------------------------------------------------------------- registry / config


def test_registered_and_built_from_config():
    assert PROPOSAL_GENERATOR_REGISTRY.get("LibraRPN") is LibraRPN
    cfg = tiny_cfg()
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "LibraRPN"
    cfg.MODEL.RPN.SAMPLER.POS = "instance"
    cfg.MODEL.RPN.SAMPLER.NEG = "iou_balanced"
    cfg.MODEL.RPN.SAMPLER.NUM_BINS = 4
    cfg.MODEL.RPN.SAMPLER.FLOOR_THR = 0.0
    cfg.MODEL.RPN.SAMPLER.FLOOR_FRACTION = 0.25
    cfg.MODEL.RPN.BALANCED_L1.GAMMA = 1.0
    rpn = build_proposal_generator(cfg, SHAPES)
    assert isinstance(rpn, LibraRPN) and isinstance(rpn.anchor_matcher, MaxIoUMatcher)
    assert rpn.sampling == LibraSamplingConfig("instance", "iou_balanced", 4, 0.0, 0.25, None)
    assert rpn.balanced_l1 == {"alpha": 0.5, "gamma": 1.0, "beta": 1.0, "form": "reference"}


@pytest.mark.parametrize("value,expected", [("absent", None), (-1.0, None), (0.3, 0.3)])
def test_optional_iou_upper_key(value, expected):
    cfg = tiny_cfg()
    cfg.MODEL.RPN.SAMPLER.pop("IOU_UPPER", None)
    if value != "absent":
        cfg.MODEL.RPN.SAMPLER.IOU_UPPER = value
    assert LibraRPN(cfg, SHAPES).sampling.iou_upper == expected


def test_missing_libra_config_is_named():
    cfg = get_cfg()
    cfg.MODEL.RPN.IN_FEATURES = list(STRIDES)
    with pytest.raises(KeyError, match="add_libra_config"):
        LibraRPN(cfg, SHAPES)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("loss_type", ["smooth_l1", "giou"])
def test_equals_detectron2_rpn_with_libra_off(loss_type):
    cfg = tiny_cfg()
    cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE = loss_type
    cfg.MODEL.RPN.SMOOTH_L1_BETA = 0.05
    ref, ours = pair(cfg)
    images, feats, gt = inputs()
    p_ref, l_ref, s_ref = run(ref, images, feats, gt)
    p_ours, l_ours, s_ours = run(ours, images, feats, gt)
    assert l_ref.keys() == l_ours.keys()
    for k in l_ref:
        assert torch.equal(l_ref[k], l_ours[k]), k
    assert s_ref == s_ours and s_ours["rpn/num_neg_anchors"] > 0
    for a, b in zip(p_ref, p_ours):
        assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)
    # the random stream really matters: another seed samples other anchors
    _, l_other, _ = run(ours, images, feats, gt, seed=1)
    assert not torch.equal(l_other["loss_rpn_cls"], l_ours["loss_rpn_cls"])


def test_balanced_l1_used_when_selected():
    cfg = tiny_cfg()
    cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE = "balanced_l1"
    cfg.MODEL.RPN.BALANCED_L1.BETA = 0.5
    _, ours = pair(cfg)
    images, feats, gt = inputs()
    anchors = ours.anchor_generator([feats[k] for k in STRIDES])
    torch.manual_seed(0)
    gt_labels, gt_boxes = ours.label_and_sample_anchors(anchors, gt)
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(2, len(a), generator=g) for a in anchors]
    pred = [torch.randn(2, len(a), 4, generator=g) * 0.3 for a in anchors]
    with EventStorage():
        loss = ours.losses(anchors, logits, gt_labels, pred, gt_boxes)["loss_rpn_loc"]
        ours.box_reg_loss_type = "smooth_l1"
        smooth = ours.losses(anchors, logits, gt_labels, pred, gt_boxes)["loss_rpn_loc"]
    fg = torch.stack(gt_labels) == 1
    all_anchors = Boxes.cat(anchors).tensor
    gt_deltas = torch.stack([ours.box2box_transform.get_deltas(all_anchors, b) for b in gt_boxes])[
        fg
    ]
    hand = balanced_l1_loss(torch.cat(pred, 1)[fg], gt_deltas, 0.5, 1.5, 0.5, reduction="sum")
    hand = hand / (cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE * 2) * cfg.MODEL.RPN.BBOX_REG_LOSS_WEIGHT
    assert fg.sum() > 0
    torch.testing.assert_close(loss, hand)
    assert not torch.allclose(loss, smooth)


# ----------------------------------------------------------------------------- sampling


def sampled_neg_max_iou(model, anchors, gt, seed):
    torch.manual_seed(seed)
    labels, _ = model.label_and_sample_anchors(anchors, gt)
    all_anchors = Boxes.cat(anchors)
    ious, counts = [], []
    for lab, inst in zip(labels, gt):
        max_iou = pairwise_iou(inst.gt_boxes, all_anchors).max(0).values
        ious.append(max_iou[lab == 0])
        counts.append(((lab == 1).sum().item(), (lab == 0).sum().item()))
    return torch.cat(ious).mean().item(), counts


def test_iou_balanced_sampling_takes_harder_negatives():
    """One small object per 128 px image: thousands of easy (IoU ~ 0) negatives. With the bins
    over the negatives' IoU range [0, 0.3) the sampled negatives have a higher mean max IoU than
    random ones; the number of sampled anchors is Detectron2's."""
    cfg = tiny_cfg()
    ref, rnd = pair(cfg)
    _, iou_bal = pair(
        cfg, sampling=LibraSamplingConfig.libra(iou_upper=cfg.MODEL.RPN.IOU_THRESHOLDS[0])
    )
    size = 128
    feats = [torch.zeros(2, CHANNELS, size // s, size // s) for s in STRIDES.values()]
    anchors = ref.anchor_generator(feats)
    gt = gt_instances((size, size), [[[30, 40, 58, 64]], [[70, 20, 90, 52], [10, 80, 40, 100]]])
    for seed in range(3):
        mean_ref, counts_ref = sampled_neg_max_iou(ref, anchors, gt, seed)
        mean_rnd, counts_rnd = sampled_neg_max_iou(rnd, anchors, gt, seed)
        mean_bal, counts_bal = sampled_neg_max_iou(iou_bal, anchors, gt, seed)
        assert mean_rnd == mean_ref and counts_rnd == counts_ref
        assert counts_bal == counts_ref
        assert sum(counts_ref[0]) == cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE
        assert mean_bal > 1.5 * mean_ref, (mean_bal, mean_ref)


def test_iou_balanced_with_plain_matcher_and_empty_image():
    """A plain Detectron2 Matcher given to the constructor works too; an image without GT gets
    only negatives (max IoU 0)."""
    cfg = tiny_cfg()
    matcher = Matcher(
        cfg.MODEL.RPN.IOU_THRESHOLDS, cfg.MODEL.RPN.IOU_LABELS, allow_low_quality_matches=True
    )
    _, ours = pair(cfg, sampling=LibraSamplingConfig.libra(iou_upper=0.3), anchor_matcher=matcher)
    images, feats, gt = inputs()
    gt[1] = gt_instances((64, 64), [[]])[0]
    _, losses, scalars = run(ours, images, feats, gt)
    assert all(torch.isfinite(v) for v in losses.values())
    labels, _ = ours.label_and_sample_anchors(
        ours.anchor_generator([feats[k] for k in STRIDES]), gt
    )
    assert (labels[1] == 1).sum() == 0 and (
        labels[1] == 0
    ).sum() == cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE


# ----------------------------------------------------------------------------- end to end


def test_tiny_libra_rpn_config_trains():
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/LT-Shapes/libra_rpn_R_18_FPN_tiny.yaml"))
    model = build_model(cfg).train()
    assert isinstance(model.proposal_generator, LibraRPN)
    assert model.proposal_generator.box_reg_loss_type == "balanced_l1"
    sampling = model.proposal_generator.sampling
    assert (sampling.pos_sampling, sampling.neg_sampling, sampling.iou_upper) == (
        "instance",
        "iou_balanced",
        0.3,
    )
    gt = gt_instances((64, 64), [[[4, 6, 30, 40], [20, 10, 60, 50]], [[10, 12, 50, 44]]])
    g = torch.Generator().manual_seed(0)
    batched = [{"image": torch.rand(3, 64, 64, generator=g) * 255, "instances": x} for x in gt]
    with EventStorage():
        losses = model(batched)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(x).all() for x in grads)
