"""LibraROIHeads / LibraFastRCNNOutputLayers: Detectron2's behaviour when every Libra option is
off, and each option doing what the paper's closed forms say when on."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tiny_models import random_batched_inputs as batched_inputs
from tiny_models import tiny_cfg

import libra_d2
from libra_d2.layers.balanced_l1 import balanced_l1_loss
from libra_d2.layers.class_reweighting import bcr_sigmoid_ce_loss
from libra_d2.layers.gradient_reweighting import lgr_cross_entropy
from libra_d2.modeling.roi_heads import LibraFastRCNNOutputLayers, LibraROIHeads
from libra_d2.utils.events import flush_deferred_scalars

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def losses_of(model, inputs, seed=123):
    torch.manual_seed(seed)
    with EventStorage() as storage:
        losses = model(inputs)
        flush_deferred_scalars(storage)
    return losses, storage


def test_libra_roi_heads_with_options_off_equals_standard_roi_heads():
    plain = build_model(tiny_cfg())
    libra = build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", "LibraROIHeads"))
    assert isinstance(libra.roi_heads, LibraROIHeads)
    libra.load_state_dict(plain.state_dict())
    inputs = batched_inputs()
    a, _ = losses_of(plain, inputs)
    b, _ = losses_of(libra, inputs)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_libra_mask_rcnn_with_options_off_equals_mask_rcnn():
    plain = build_model(tiny_cfg("MODEL.MASK_ON", True))
    libra = build_model(tiny_cfg("MODEL.MASK_ON", True, "MODEL.ROI_HEADS.NAME", "LibraROIHeads"))
    libra.load_state_dict(plain.state_dict())
    inputs = batched_inputs(with_masks=True)
    a, _ = losses_of(plain, inputs)
    b, _ = losses_of(libra, inputs)
    assert "loss_mask" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_iou_balanced_sampling_picks_harder_negatives():
    fractions = {}
    for neg in ("random", "iou_balanced"):
        model = build_model(
            tiny_cfg(
                "MODEL.ROI_HEADS.NAME",
                "LibraROIHeads",
                "MODEL.ROI_HEADS.SAMPLER.NEG",
                neg,
                "MODEL.ROI_HEADS.SAMPLER.IOU_UPPER",
                0.5,
            )
        )
        torch.manual_seed(0)
        model.load_state_dict(build_model(tiny_cfg()).state_dict())
        vals = []
        for seed in range(3):
            _, storage = losses_of(model, batched_inputs(seed=seed), seed=seed)
            vals.append(storage.history("roi_head/hard_neg_fraction").latest())
        fractions[neg] = sum(vals) / len(vals)
    assert fractions["iou_balanced"] > fractions["random"] + 0.05, fractions


def _predictor_and_inputs(*opts, num_rois=12):
    cfg = tiny_cfg("MODEL.ROI_HEADS.NAME", "LibraROIHeads", *opts)
    torch.manual_seed(0)
    predictor = LibraFastRCNNOutputLayers(cfg, ShapeSpec(channels=16))
    feats = torch.randn(num_rois, 16)
    props = Instances((64, 64))
    xy = torch.rand(num_rois, 2) * 40
    props.proposal_boxes = Boxes(torch.cat([xy, xy + 10 + torch.rand(num_rois, 2) * 10], 1))
    props.gt_boxes = Boxes(props.proposal_boxes.tensor + torch.randn(num_rois, 4))
    props.gt_classes = torch.tensor([0, 5, 31, 32, 32, 7, 32, 1, 2, 32, 32, 3])[:num_rois]
    return predictor, feats, props


def _fg_deltas(predictor, predictions, props):
    _, deltas = predictions
    fg = (props.gt_classes < 32).nonzero().squeeze(1)
    pred = deltas.view(-1, 32, 4)[fg, props.gt_classes[fg]]
    gt = predictor.box2box_transform.get_deltas(
        props.proposal_boxes.tensor[fg], props.gt_boxes.tensor[fg]
    )
    return pred, gt


def test_balanced_l1_box_loss_matches_closed_form():
    predictor, feats, props = _predictor_and_inputs(
        "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "balanced_l1"
    )
    predictions = predictor(feats)
    with EventStorage():
        losses = predictor.losses(predictions, [props])
    pred, gt = _fg_deltas(predictor, predictions, props)
    expected = balanced_l1_loss(pred, gt, alpha=0.5, gamma=1.5, beta=1.0, reduction="sum") / 12
    torch.testing.assert_close(losses["loss_box_reg"], expected)


@pytest.mark.parametrize("cls_loss", ["lgr_ce", "bcr"])
def test_classification_losses_match_closed_forms(cls_loss, lt_shapes_tiny):
    predictor, feats, props = _predictor_and_inputs("MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", cls_loss)
    predictions = predictor(feats)
    with EventStorage():
        losses = predictor.losses(predictions, [props])
    scores = predictions[0]
    if cls_loss == "lgr_ce":
        expected = lgr_cross_entropy(scores, props.gt_classes, alpha=0.8, gamma=1.0)
        assert not torch.allclose(
            expected, torch.nn.functional.cross_entropy(scores, props.gt_classes)
        )
    else:
        w = predictor.bcr_class_weights
        assert w.shape == (32,)
        expected = bcr_sigmoid_ce_loss(
            scores, props.gt_classes, w, reduction="mean", exclude_background_rois=True
        )  # the config default
        probs = predictor.predict_probs(predictions, [props])[0]
        torch.testing.assert_close(probs, torch.sigmoid(scores))
    torch.testing.assert_close(losses["loss_cls"], expected)


def test_bcr_weights_follow_training_frequencies(lt_shapes_tiny):
    from detectron2.data import MetadataCatalog

    predictor, _, _ = _predictor_and_inputs("MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "bcr")
    meta = MetadataCatalog.get("lt_shapes_train")
    counts = [c["image_count"] for c in meta.class_image_count]
    w = predictor.bcr_class_weights
    rare, frequent = counts.index(min(counts)), counts.index(max(counts))
    assert w[rare] < 0.1 < 0.9 < w[frequent]
    # and the weights are saved with the model (a buffer), so evaluation-only runs need no data
    assert "bcr_class_weights" in predictor.state_dict()
    # the sigmoid classifier starts at the prior probability 0.01 for every class
    torch.testing.assert_close(torch.sigmoid(predictor.cls_score.bias), torch.full((33,), 0.01))


def test_unknown_cls_loss_type_is_clear():
    with pytest.raises(ValueError, match="CLS_LOSS_TYPE='focal'"):
        _predictor_and_inputs("MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "focal")


def test_full_libra_faster_rcnn_trains(lt_shapes_tiny):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(
        os.path.join(REPO_ROOT, "configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml")
    )
    model = build_model(cfg)
    losses, _ = losses_of(model, batched_inputs())
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    refine_grad = [p.grad for n, p in model.named_parameters() if "refine" in n]
    assert refine_grad and all(g is not None for g in refine_grad)
