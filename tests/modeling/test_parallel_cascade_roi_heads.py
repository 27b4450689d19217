"""ParallelCascadeROIHeads (PRM in every Cascade R-CNN stage): one module equals Detectron2's
CascadeROIHeads, every module of a later stage is trained on the refinements of its own stage-0
sample, and inference averages the modules' logits in every stage."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import CascadeROIHeads, build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tiny_models import losses_and_storage as losses_of
from tiny_models import predict_instances as predict
from tiny_models import random_batched_inputs as batched_inputs
from tiny_models import tiny_cfg

import libra_d2
from libra_d2.layers import scale_gradient
from libra_d2.modeling.roi_heads import ParallelCascadeROIHeads, ParallelROIHeads

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGNOSTIC = ["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True]
CASCADE = ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads", *AGNOSTIC]
PRM_CASCADE = ["MODEL.ROI_HEADS.NAME", "ParallelCascadeROIHeads", *AGNOSTIC]
ONE_MODULE = ["MODEL.PRM.POSITIVE_FRACTIONS", [0.25]]
KEEP_ALL = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]


def assert_same_detections(a, b):
    for x, y in zip(a, b):
        assert len(x) > 0
        assert torch.equal(x.pred_boxes.tensor, y.pred_boxes.tensor)
        assert torch.equal(x.scores, y.scores)
        assert torch.equal(x.pred_classes, y.pred_classes)


def test_scale_gradient():
    x = torch.randn(5, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((5,), 0.25))


def test_one_module_equals_cascade_roi_heads():
    """Same weights (a Cascade checkpoint, loaded strictly): the same losses
    (``loss_cls_stage<s>`` == ``loss_cls_stage<s>_h0``), gradients, logged samples and
    detections as Detectron2's Cascade R-CNN."""
    plain = build_model(tiny_cfg(*CASCADE, *KEEP_ALL))
    prm = build_model(tiny_cfg(*PRM_CASCADE, *ONE_MODULE, *KEEP_ALL))
    assert isinstance(plain.roi_heads, CascadeROIHeads)
    assert prm.roi_heads.num_cascade_stages == 3 and prm.roi_heads.num_heads == 1
    mapped = {
        k.replace("box_head.", "box_heads.0.").replace("box_predictor.", "box_predictors.0."): v
        for k, v in plain.state_dict().items()
    }
    assert mapped.keys() == prm.state_dict().keys()
    prm.load_state_dict(plain.state_dict())
    inputs = batched_inputs()
    a, sa = losses_of(plain, inputs)
    b, sb = losses_of(prm, inputs)
    renamed = {k + "_h0" if "_stage" in k else k: v for k, v in a.items()}
    assert renamed.keys() == b.keys() and len(b) == 2 + 2 * 3
    for k in renamed:
        assert torch.equal(renamed[k], b[k]), k
    sum(a.values()).backward()
    sum(b.values()).backward()
    grads = {n: p.grad for n, p in prm.named_parameters()}
    for n, p in plain.named_parameters():
        m = n.replace("box_head.", "box_heads.0.").replace("box_predictor.", "box_predictors.0.")
        torch.testing.assert_close(p.grad, grads[m], rtol=1e-5, atol=1e-7, msg=n)
    for s in range(3):
        key = "stage{}/fast_rcnn/cls_accuracy".format(s)
        assert sa.history(key).latest() == sb.history(key).latest(), key
    for key in ("stage1/roi_head/num_fg_samples", "stage2/roi_head/num_bg_samples"):
        assert sa.history(key).latest() == sb.history(key).latest(), key
    assert_same_detections(predict(plain, inputs), predict(prm, inputs))


def test_cascade_checkpoint_initialises_every_module_and_identical_modules_equal_cascade():
    """A Detectron2 Cascade R-CNN checkpoint loads into both modules of every stage; with the
    modules identical, averaging their logits changes nothing: the detections are Cascade's."""
    plain = build_model(tiny_cfg(*CASCADE, *KEEP_ALL))
    prm = build_model(tiny_cfg(*PRM_CASCADE, *KEEP_ALL))
    prm.load_state_dict(plain.state_dict())
    heads = prm.roi_heads
    for k in range(2):
        for s in range(3):
            for name, p in heads.box_predictors[k][s].named_parameters():
                ref = dict(plain.roi_heads.box_predictor[s].named_parameters())[name]
                assert torch.equal(p, ref)
    assert_same_detections(predict(plain, batched_inputs()), predict(prm, batched_inputs()))


def test_one_stage_equals_parallel_roi_heads():
    """With one stage the cascade is PRM on Faster R-CNN: same losses and detections as
    ParallelROIHeads with the same weights (whose inference is checked by hand)."""
    one_stage = [
        "MODEL.ROI_BOX_CASCADE_HEAD.IOUS",
        [0.5],
        "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS",
        [[10.0, 10.0, 5.0, 5.0]],
    ]
    faster = build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", "ParallelROIHeads", *AGNOSTIC, *KEEP_ALL))
    cascade = build_model(tiny_cfg(*PRM_CASCADE, *one_stage, *KEEP_ALL))
    assert isinstance(faster.roi_heads, ParallelROIHeads)
    state = {
        k.replace("box_heads.0.", "box_heads.0.0.")
        .replace("box_heads.1.", "box_heads.1.0.")
        .replace("box_predictors.0.", "box_predictors.0.0.")
        .replace("box_predictors.1.", "box_predictors.1.0."): v
        for k, v in faster.state_dict().items()
    }
    cascade.load_state_dict(state)
    inputs = batched_inputs()
    a, _ = losses_of(faster, inputs)
    b, _ = losses_of(cascade, inputs)
    assert {k.replace("_stage0", "") for k in b} == a.keys()
    for k, v in b.items():
        torch.testing.assert_close(v, a[k.replace("_stage0", "")], rtol=1e-6, atol=0, msg=k)
    assert_same_detections(predict(faster, inputs), predict(cascade, inputs))


def test_later_stages_train_every_module_on_its_own_refined_sample():
    """Stage s > 0: module k's RoIs are the refinements of its own stage-0 sample (the 1:9 module
    keeps more negatives), every module's losses exist per stage, and the features' gradient of
    each stage is divided by the number of stages."""
    # BatchNorm that trains: on the random inputs, an untrained FrozenBN backbone proposes too few
    # boxes near the objects for both modules' positive quotas to differ (only the 12 gt boxes)
    model = build_model(tiny_cfg(*PRM_CASCADE, "MODEL.RESNETS.NORM", "BN"))
    heads = model.roi_heads
    losses, storage = losses_of(model, batched_inputs())
    rcnn = {k for k in losses if not k.startswith("loss_rpn")}
    assert rcnn == {
        "{}_stage{}_h{}".format(name, s, k)
        for name in ("loss_cls", "loss_box_reg")
        for s in range(3)
        for k in range(2)
    }
    sum(losses.values()).backward()
    for k in range(2):
        for s in range(3):
            assert heads.box_predictors[k][s].cls_score.weight.grad.abs().sum() > 0, (k, s)
    hist = storage.histories()
    # The modules' stage-0 samples: 128 RoIs at 0.5 and 0.1 (fewer where positives run out).
    fg0 = [hist["prm/num_fg_samples_h{}".format(k)].latest() for k in range(2)]
    bg0 = [hist["prm/num_bg_samples_h{}".format(k)].latest() for k in range(2)]
    assert fg0[0] > fg0[1] and bg0[0] < bg0[1]
    for s in (1, 2):
        fg = [hist["prm/stage{}/num_fg_samples_h{}".format(s, k)].latest() for k in range(2)]
        assert fg == sorted(fg, reverse=True), (s, fg)
        assert hist["stage{}/roi_head/num_fg_samples".format(s)].latest() == fg[0]
        for k in range(2):
            assert "stage{}/fast_rcnn/cls_accuracy_h{}".format(s, k) in hist


def _heads_and_features(*opts, seed=0):
    cfg = tiny_cfg(*PRM_CASCADE, *opts)
    shapes = {"p{}".format(i): ShapeSpec(channels=64, stride=2**i) for i in range(2, 7)}
    torch.manual_seed(seed)
    heads = build_roi_heads(cfg, shapes)
    g = torch.Generator().manual_seed(seed + 1)
    features = {
        "p{}".format(i): torch.randn(2, 64, 64 // 2**i, 64 // 2**i, generator=g)
        for i in range(2, 7)
    }
    return heads, features


def test_stage_rows_follow_their_module_through_dropped_boxes():
    """Module k's RoIs at stage 1 are exactly the regression module's stage-0 refinements of
    module k's own sample, in its order, less the boxes that the refinement pushed out of the
    image (Detectron2's Cascade drops empty boxes in training)."""
    heads, features = _heads_and_features()
    heads.train()
    targets = [x["instances"] for x in batched_inputs()]
    g = torch.Generator().manual_seed(5)
    proposals = []
    for t in targets:
        p = Instances(t.image_size)
        xy = torch.rand(300, 2, generator=g) * 56
        p.proposal_boxes = Boxes(torch.cat([xy, xy + 2 + torch.rand(300, 2, generator=g) * 20], 1))
        p.objectness_logits = torch.zeros(300)
        proposals.append(p)
    reg = heads.regression_head
    with torch.no_grad():  # stage 0 moves every box right by 3 widths: some leave the image
        heads.box_predictors[reg][0].bbox_pred.weight.zero_()
        heads.box_predictors[reg][0].bbox_pred.bias.copy_(torch.tensor([30.0, 0.0, 0.0, 0.0]))
    seen = {}
    for k in range(2):
        predictor = heads.box_predictors[k][1]

        def record(predictions, props, k=k, original=predictor.losses):
            seen[k] = [x.proposal_boxes.tensor.clone() for x in props]
            return original(predictions, props)

        predictor.losses = record
    torch.manual_seed(0)
    with EventStorage():
        per_head, union, rows = heads._label_and_sample_union(proposals, targets)
        losses = heads._forward_box(features, per_head, union=union, rows=rows, targets=targets)
    assert all(torch.isfinite(v) for v in losses.values())
    dropped = 0
    for k in range(2):
        for i, sample in enumerate(per_head[k]):
            b = sample.proposal_boxes.tensor
            w = b[:, 2] - b[:, 0]
            moved = torch.stack([b[:, 0] + 3 * w, b[:, 1], b[:, 2] + 3 * w, b[:, 3]], dim=1)
            moved = Boxes(moved)
            moved.clip((64, 64))
            expected = moved.tensor[moved.nonempty()]
            dropped += len(b) - len(expected)
            torch.testing.assert_close(seen[k][i], expected)
    assert dropped > 0


def test_bad_cascade_options_are_clear():
    with pytest.raises(ValueError, match="class-agnostic"):
        build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", "ParallelCascadeROIHeads"))
    with pytest.raises(ValueError, match="IOUS\\[0\\]"):
        build_model(tiny_cfg(*PRM_CASCADE, "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.4, 0.6, 0.7]))
    with pytest.raises(ValueError, match="BBOX_REG_WEIGHTS"):
        build_model(tiny_cfg(*PRM_CASCADE, "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.5, 0.6]))


def test_composes_with_libra_rcnn(lt_shapes_tiny):
    """On the full Libra Faster R-CNN config: Libra's samplers pick stage 0's RoIs, every stage's
    predictor has Balanced L1 and BCR with its own regression weights, and it trains."""
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(
        os.path.join(REPO_ROOT, "configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml")
    )
    cfg.merge_from_list([*PRM_CASCADE, *KEEP_ALL])
    model = build_model(cfg)
    heads = model.roi_heads
    assert isinstance(heads, ParallelCascadeROIHeads)
    assert heads.sampling.neg_sampling == "iou_balanced"
    for k in range(2):
        weights = [p.box2box_transform.weights for p in heads.box_predictors[k]]
        assert weights == [
            (10.0, 10.0, 5.0, 5.0),
            (20.0, 20.0, 10.0, 10.0),
            (30.0, 30.0, 15.0, 15.0),
        ]
        assert all(p.box_reg_loss_type == "balanced_l1" for p in heads.box_predictors[k])
    losses, storage = losses_of(model, batched_inputs())
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and "loss_box_reg_stage2_h1" in losses
    assert "roi_head/hard_neg_fraction" in storage.histories()
    assert len(predict(model, batched_inputs())[0]) > 0
