"""ParallelROIHeads (Parallel R-CNN Modules): one module equals the standard ROI heads, every
module samples with its own positive fraction, losses are per module, and inference averages the
pre-softmax logits of all modules with the boxes of the highest-fraction module."""

import math
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tiny_models import losses_and_storage as losses_of
from tiny_models import predict_instances as predict
from tiny_models import random_batched_inputs as batched_inputs
from tiny_models import tiny_cfg

import libra_d2
from libra_d2.modeling.roi_heads import LibraROIHeads, ParallelROIHeads
from libra_d2.utils.events import flush_deferred_scalars

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRM = ["MODEL.ROI_HEADS.NAME", "ParallelROIHeads"]


def single_to_prm_key(k):
    return k.replace("box_head.", "box_heads.0.").replace("box_predictor.", "box_predictors.0.")


KEEP_ALL = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]


# --------------------------------------------------------------------------- one module


def test_one_module_is_built_like_libra_roi_heads():
    torch.manual_seed(0)
    libra = build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", "LibraROIHeads"))
    torch.manual_seed(0)
    prm = build_model(tiny_cfg(*PRM, "MODEL.PRM.POSITIVE_FRACTIONS", [0.25]))
    assert isinstance(prm.roi_heads, ParallelROIHeads) and isinstance(prm.roi_heads, LibraROIHeads)
    a = {single_to_prm_key(k): v for k, v in libra.state_dict().items()}
    b = prm.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_one_module_equals_standard_roi_heads():
    """Same weights and seed: the losses (loss_cls == loss_cls_h0, ...) and the detections of
    ParallelROIHeads with one module equal those of Detectron2's StandardROIHeads."""
    plain = build_model(tiny_cfg(*KEEP_ALL))
    prm = build_model(tiny_cfg(*PRM, "MODEL.PRM.POSITIVE_FRACTIONS", [0.25], *KEEP_ALL))
    # a single-head checkpoint loads (box_head.* -> box_heads.0.*), strictly
    prm.load_state_dict(plain.state_dict())
    inputs = batched_inputs()
    a, sa = losses_of(plain, inputs)
    b, sb = losses_of(prm, inputs)
    assert set(b) == {k + "_h0" if k.startswith(("loss_cls", "loss_box")) else k for k in a}
    for k in a:
        kb = k + "_h0" if k in ("loss_cls", "loss_box_reg") else k
        assert torch.equal(a[k], b[kb]), k
    for key in ("roi_head/num_fg_samples", "roi_head/num_bg_samples", "fast_rcnn/cls_accuracy"):
        assert sa.history(key).latest() == sb.history(key).latest(), key
    pa, pb = predict(plain, inputs), predict(prm, inputs)
    for x, y in zip(pa, pb):
        assert len(x) > 0
        assert torch.equal(x.pred_boxes.tensor, y.pred_boxes.tensor)
        assert torch.equal(x.scores, y.scores)
        assert torch.equal(x.pred_classes, y.pred_classes)


def test_single_head_checkpoint_initialises_every_module():
    plain = build_model(tiny_cfg())
    prm = build_model(tiny_cfg(*PRM))
    prm.load_state_dict(plain.state_dict())
    for k in range(2):
        for name, p in prm.roi_heads.box_predictors[k].named_parameters():
            assert torch.equal(p, dict(plain.roi_heads.box_predictor.named_parameters())[name])
        for name, p in prm.roi_heads.box_heads[k].named_parameters():
            assert torch.equal(p, dict(plain.roi_heads.box_head.named_parameters())[name])


# --------------------------------------------------------------------------- training


def test_losses_are_per_module_and_logged():
    model = build_model(tiny_cfg(*PRM))
    assert model.roi_heads.positive_fractions == (0.5, 0.1)
    losses, storage = losses_of(model, batched_inputs())
    assert set(losses) == {
        "loss_cls_h0",
        "loss_box_reg_h0",
        "loss_cls_h1",
        "loss_box_reg_h1",
        "loss_rpn_cls",
        "loss_rpn_loc",
    }
    # the two modules' parameters are distinct and each gets gradients from its own loss only
    model.zero_grad()
    losses["loss_cls_h1"].backward()
    assert model.roi_heads.box_predictors[0].cls_score.weight.grad is None
    assert model.roi_heads.box_predictors[1].cls_score.weight.grad.abs().sum() > 0
    hist = storage.histories()
    for k in range(2):
        for key in (
            "prm/num_fg_samples_h{}",
            "prm/num_bg_samples_h{}",
            "fast_rcnn/cls_accuracy_h{}",
        ):
            assert key.format(k) in hist, key.format(k)
    assert "roi_head/num_fg_samples" in hist and "fast_rcnn/cls_accuracy" in hist


def _roi_heads_and_features(*opts, num_images=2, seed=0):
    cfg = tiny_cfg(*PRM, *opts)
    shapes = {"p{}".format(i): ShapeSpec(channels=64, stride=2**i) for i in range(2, 7)}
    torch.manual_seed(seed)
    heads = build_roi_heads(cfg, shapes)
    g = torch.Generator().manual_seed(seed + 1)
    features = {
        "p{}".format(i): torch.randn(num_images, 64, 64 // 2**i, 64 // 2**i, generator=g)
        for i in range(2, 7)
    }
    return heads, features, g


def _near_and_far_proposals(g, num_images=2):
    """Per image 2 GTs, 150 proposals close to them (IoU > 0.5: positives), 150 small far ones."""
    proposals, targets = [], []
    for _ in range(num_images):
        gt = torch.tensor([[4.0, 4.0, 28.0, 30.0], [30.0, 20.0, 60.0, 50.0]])
        t = Instances((64, 64))
        t.gt_boxes = Boxes(gt)
        t.gt_classes = torch.tensor([3, 17])
        near = gt.repeat(75, 1) + torch.rand(150, 4, generator=g) * 2 - 1
        xy = torch.rand(150, 2, generator=g) * 56
        far = torch.cat([xy, xy + 4], dim=1)
        p = Instances((64, 64))
        p.proposal_boxes = Boxes(torch.cat([near, far]))
        p.objectness_logits = torch.zeros(300)
        proposals.append(p)
        targets.append(t)
    return proposals, targets


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "independent"])
def test_each_module_samples_with_its_own_positive_fraction(nested):
    heads, features, g = _roi_heads_and_features("MODEL.PRM.NESTED_SAMPLING", nested)
    assert heads.nested_sampling is nested
    heads.train()
    proposals, targets = _near_and_far_proposals(g)
    with EventStorage() as storage:
        per_head = heads.label_and_sample_proposals_per_head(proposals, targets)
        flush_deferred_scalars(storage)
    batch = 128  # BATCH_SIZE_PER_IMAGE of the tiny config
    for k, fraction in enumerate((0.5, 0.1)):
        for sampled in per_head[k]:
            assert len(sampled) == batch
            assert (sampled.gt_classes < 32).sum().item() == int(batch * fraction)
            assert len(set(map(tuple, sampled.proposal_boxes.tensor.tolist()))) == batch
        assert storage.history("prm/num_fg_samples_h{}".format(k)).latest() == int(batch * fraction)
    assert storage.history("roi_head/num_fg_samples").latest() == 64  # the 0.5 module's
    # pooled once per image: the union of the two samples (nested: 64 positives + 116 negatives)
    pooled = storage.history("prm/pooled_rois_per_image").latest()
    if nested:
        assert pooled == 64 + 116
    else:
        assert 64 + 116 < pooled <= 256


def _box_set(instances, positives):
    fg = (instances.gt_classes < 32) == positives
    return set(map(tuple, instances.proposal_boxes.tensor[fg].tolist()))


def test_nested_samples_are_nested_and_uniform():
    """Nested: the 1:9 module's positives are among the 1:1 module's, its negatives include the
    1:1 module's; yet over many draws every module's sample is uniform over the candidates (each
    positive is picked by the 1:9 module with probability 12 / 150)."""
    heads, features, g = _roi_heads_and_features()
    heads.train()
    proposals, targets = _near_and_far_proposals(g, num_images=1)
    counts = {}
    torch.manual_seed(0)
    draws = 300
    with EventStorage():
        for _ in range(draws):
            h0, h1 = (
                out[0] for out in heads.label_and_sample_proposals_per_head(proposals, targets)
            )
            assert _box_set(h1, True) <= _box_set(h0, True)
            assert _box_set(h0, False) <= _box_set(h1, False)
            for box in _box_set(h1, True):
                counts[box] = counts.get(box, 0) + 1
    # 150 near proposals + the 2 appended GT boxes are positives
    assert len(counts) == 152
    expected = draws * 12 / 152
    assert all(expected / 4 < c < 3 * expected for c in counts.values())


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "independent"])
def test_union_pooling_equals_pooling_every_module_alone(nested):
    """The union's RoI features, indexed by a module's rows, are bit-identical to pooling the
    module's own sample, and so are the losses."""
    heads, features, g = _roi_heads_and_features("MODEL.PRM.NESTED_SAMPLING", nested)
    heads.train()
    proposals, targets = _near_and_far_proposals(g)
    feats = [features[f] for f in heads.box_in_features]
    with EventStorage():
        per_head, union, rows = heads._label_and_sample_union(proposals, targets)
        pooled = heads.box_pooler(feats, union)
        assert len(pooled) < sum(len(x) for out in per_head for x in out)
        for k in range(2):
            alone = heads.box_pooler(feats, [x.proposal_boxes for x in per_head[k]])
            assert torch.equal(pooled[rows[k]], alone)
        a = heads._forward_box(features, per_head, union=union, rows=rows)
        b = heads._forward_box(features, per_head)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_balanced_samplers_are_sampled_independently():
    """A subset of a balanced sample is not a balanced sample: with Libra's samplers nested
    sampling is not used (no subset relation is forced)."""
    heads, features, g = _roi_heads_and_features(
        "MODEL.ROI_HEADS.SAMPLER.POS", "instance", "MODEL.ROI_HEADS.SAMPLER.NEG", "iou_balanced"
    )
    heads.train()
    proposals, targets = _near_and_far_proposals(g)
    torch.manual_seed(0)
    with EventStorage() as storage:
        per_head = heads.label_and_sample_proposals_per_head(proposals, targets)
    assert storage.history("prm/pooled_rois_per_image").latest() > 64 + 116
    for k, fraction in enumerate((0.5, 0.1)):
        for sampled in per_head[k]:
            assert len(sampled) == 128
            assert (sampled.gt_classes < 32).sum().item() == int(128 * fraction)


def test_parallel_mask_rcnn_trains_and_predicts_masks():
    cfg_opts = [*PRM, "MODEL.MASK_ON", True, "MODEL.ROI_MASK_HEAD.CONV_DIM", 16, *KEEP_ALL]
    model = build_model(tiny_cfg(*cfg_opts))
    inputs = batched_inputs(with_masks=True)
    losses, _ = losses_of(model, inputs)
    assert "loss_mask" in losses and "loss_cls_h1" in losses
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0
    out = predict(model, inputs)
    assert len(out[0]) > 0 and out[0].has("pred_masks")
    assert out[0].pred_masks.shape[1:] == (64, 64)


# --------------------------------------------------------------------------- inference


def _decode(deltas, boxes, weights=(10.0, 10.0, 5.0, 5.0), clamp=math.log(1000.0 / 16)):
    """Detectron2's Box2BoxTransform.apply_deltas, written out: (R, K*4) deltas on (R, 4) boxes."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = boxes[:, 0] + 0.5 * w
    cy = boxes[:, 1] + 0.5 * h
    d = deltas.view(deltas.shape[0], -1, 4)
    dx, dy = d[..., 0] / weights[0], d[..., 1] / weights[1]
    dw = (d[..., 2] / weights[2]).clamp(max=clamp)
    dh = (d[..., 3] / weights[3]).clamp(max=clamp)
    pcx, pcy = dx * w[:, None] + cx[:, None], dy * h[:, None] + cy[:, None]
    pw, ph = torch.exp(dw) * w[:, None], torch.exp(dh) * h[:, None]
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=-1)


@pytest.mark.parametrize("test_head", [-1, 0, 1], ids=["ensemble", "head0", "head1"])
def test_inference_equals_hand_computation(test_head):
    """Fractions (0.1, 0.5): the regression module is the second one. With NMS off (IoU threshold
    1.0), no top-k cut and a small score threshold, the detections are exactly the (proposal,
    class) pairs scored above the threshold: softmax of the averaged logits, boxes decoded from
    the 0.5 module's deltas (or module k's alone)."""
    thresh = 1e-3
    heads, features, g = _roi_heads_and_features(
        "MODEL.PRM.POSITIVE_FRACTIONS",
        [0.1, 0.5],
        "MODEL.PRM.TEST_HEAD",
        test_head,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        thresh,
        "MODEL.ROI_HEADS.NMS_THRESH_TEST",
        1.0,
        "TEST.DETECTIONS_PER_IMAGE",
        100000,
        num_images=1,
    )
    assert heads.regression_head == 1
    with torch.no_grad():  # spread the logits and deltas so that scores are well apart
        for p in heads.box_predictors:
            p.cls_score.weight.mul_(100)
            p.bbox_pred.weight.mul_(30)
    heads.eval()
    xy = torch.rand(6, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 8 + torch.rand(6, 2, generator=g) * 16], dim=1)
    proposals = Instances((64, 64))
    proposals.proposal_boxes = Boxes(boxes)
    proposals.objectness_logits = torch.zeros(6)
    with torch.no_grad():
        out, _ = heads(None, features, [proposals])
        out = out[0]

        # by hand: the module's pooler (shared), then each module's FC layers as matrices
        pooled = heads.box_pooler(
            [features[f] for f in heads.box_in_features], [proposals.proposal_boxes]
        )
        logits, deltas = [], []
        for k in range(2):
            x = pooled.flatten(1)
            fc = heads.box_heads[k]
            x = torch.relu(x @ fc.fc1.weight.T + fc.fc1.bias)
            x = torch.relu(x @ fc.fc2.weight.T + fc.fc2.bias)
            pred = heads.box_predictors[k]
            logits.append(x @ pred.cls_score.weight.T + pred.cls_score.bias)
            deltas.append(x @ pred.bbox_pred.weight.T + pred.bbox_pred.bias)
    if test_head < 0:
        avg, reg = (logits[0] + logits[1]) / 2, 1
    else:
        avg, reg = logits[test_head], test_head
    scores = torch.softmax(avg, dim=1)[:, :32]  # (6, 32), background dropped
    cand = _decode(deltas[reg], boxes)  # (6, 32, 4)
    cand[..., 0::2] = cand[..., 0::2].clamp(0, 64)
    cand[..., 1::2] = cand[..., 1::2].clamp(0, 64)

    expected = (scores > thresh).sum().item()
    assert 10 < expected < 6 * 32
    assert len(out) == expected
    matched = set()
    for box, cls, score in zip(out.pred_boxes.tensor, out.pred_classes, out.scores):
        dist = (cand[:, cls] - box).abs().sum(dim=1)
        i = int(dist.argmin())
        assert dist[i] < 1e-3, (dist[i], cls)
        torch.testing.assert_close(score, scores[i, cls], rtol=1e-4, atol=1e-6)
        matched.add((i, int(cls)))
    assert len(matched) == expected


def test_single_module_evaluation_differs_from_ensemble():
    outs = {}
    for test_head in (-1, 0, 1):
        heads, features, g = _roi_heads_and_features(
            "MODEL.PRM.TEST_HEAD", test_head, *KEEP_ALL, num_images=1
        )
        heads.eval()
        p = Instances((64, 64))
        p.proposal_boxes = Boxes(torch.tensor([[4.0, 4.0, 30.0, 30.0], [20.0, 10.0, 50.0, 60.0]]))
        p.objectness_logits = torch.zeros(2)
        with torch.no_grad():
            outs[test_head] = heads(None, features, [p])[0][0]
    assert not torch.equal(outs[-1].scores, outs[0].scores)
    assert not torch.equal(outs[0].scores, outs[1].scores)


def test_bad_prm_options_are_clear():
    with pytest.raises(ValueError, match="TEST_HEAD=2"):
        build_model(tiny_cfg(*PRM, "MODEL.PRM.TEST_HEAD", 2))
    with pytest.raises(ValueError, match="POSITIVE_FRACTIONS"):
        build_model(tiny_cfg(*PRM, "MODEL.PRM.POSITIVE_FRACTIONS", [0.5, 0.0]))


def test_composes_with_libra_rcnn(lt_shapes_tiny):
    """PRM on the full Libra Faster R-CNN (BFP, IoU-balanced + instance-balanced sampling,
    Balanced L1, BCR): every module gets Libra's predictor and losses, and it trains and predicts.
    """
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(
        os.path.join(REPO_ROOT, "configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml")
    )
    cfg.merge_from_list([*PRM, *KEEP_ALL])
    model = build_model(cfg)
    assert all(
        p.cls_loss_type == "bcr" and p.box_reg_loss_type == "balanced_l1"
        for p in model.roi_heads.box_predictors
    )
    assert model.roi_heads.sampling.neg_sampling == "iou_balanced"
    losses, storage = losses_of(model, batched_inputs())
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and "loss_cls_h1" in losses
    assert "roi_head/hard_neg_fraction" in storage.histories()
    assert len(predict(model, batched_inputs())[0]) > 0
