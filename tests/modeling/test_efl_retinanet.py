"""EFLRetinaNet: RetinaNet's losses at s = 0; the normaliser; statistics buffers trained, logged,
checkpointed; the ablation switches; ATSS against a hand computation; the IoU branch (loss and test
score); every tiny EFL config trains; train_net.py end to end with the statistics in metrics.json.
"""

import json
import math
import os
import statistics

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_INPUT
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.modeling.meta_arch import RetinaNet
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from fvcore.nn import sigmoid_focal_loss_jit, smooth_l1_loss
from tiny_models import cfg_from, dense_case
from tiny_models import fixed_batched_inputs as batched_inputs
from tiny_models import train_losses

from libra_d2.layers.equalized_focal_loss import EFLClassificationLoss
from libra_d2.modeling import dense_efl
from libra_d2.modeling.atss_matcher import ATSSMatcher
from libra_d2.modeling.matcher import MATCHER_REGISTRY, build_matcher
from libra_d2.modeling.meta_arch import EFLRetinaNet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EFL_TINY = "configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml"
IMPROVED_TINY = "configs/LT-Shapes/efl_improved_baseline_R_18_FPN_tiny.yaml"
LIBRA_EFL_TINY = "configs/LT-Shapes/libra_efl_retinanet_R_18_FPN_tiny.yaml"
STAT_KEYS = ("efl.statistics.pos_grad", "efl.statistics.neg_grad")


# ----------------------------------------------------------------------------- registry / config


def test_registered_and_built_from_config():
    assert META_ARCH_REGISTRY.get("EFLRetinaNet") is EFLRetinaNet
    assert MATCHER_REGISTRY.get("ATSSMatcher") is ATSSMatcher
    assert build_matcher("ATSSMatcher").topk == 18
    model = build_model(cfg_from(EFL_TINY))
    assert isinstance(model, EFLRetinaNet) and isinstance(model.efl, EFLClassificationLoss)
    assert (model.efl.gamma_b, model.efl.scale, model.efl.alpha) == (2.0, 8.0, 0.25)
    assert model.loss_normalizer_type == "num_pos" and not model.iou_branch
    assert set(STAT_KEYS) <= set(model.state_dict())
    assert model.frequency_groups == list(MetadataCatalog.get("lt_shapes_train").category_frequency)

    improved = build_model(cfg_from(IMPROVED_TINY))
    assert isinstance(improved.anchor_matcher, ATSSMatcher) and improved.anchor_matcher.topk == 18
    assert improved.iou_branch and improved.box_reg_loss_type == "giou"
    assert any(isinstance(m, torch.nn.GroupNorm) for m in improved.head.cls_subnet)  # GN heads
    assert improved.anchor_generator.num_cell_anchors == [2] * 5  # scales {6, 8} (halved), ratio 1

    with pytest.raises(ValueError, match="LOSS_NORMALIZER"):
        build_model(cfg_from(EFL_TINY, **{"MODEL.EFL.LOSS_NORMALIZER": "mean"}))
    with pytest.raises(ValueError, match="ANCHOR_MATCHER"):
        build_model(cfg_from(EFL_TINY, **{"MODEL.EFL.ANCHOR_MATCHER": "max_iou"}))


# ----------------------------------------------------------------------------- s = 0 is RetinaNet


def test_scale_zero_equals_retinanet():
    """SCALE 0 with Detectron2's EMA normaliser: the losses (and gradients) are RetinaNet's, step
    after step, while the statistics are accumulated."""
    # Plain heads: Detectron2 0.6's RetinaNet cannot build the tiny config's GN heads.
    cfg = cfg_from(
        EFL_TINY,
        **{"MODEL.EFL.SCALE": 0.0, "MODEL.EFL.LOSS_NORMALIZER": "ema", "MODEL.RETINANET.NORM": ""},
    )
    torch.manual_seed(0)
    ref = RetinaNet(cfg).train()
    ours = EFLRetinaNet(cfg).train()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert sorted(missing) == sorted(STAT_KEYS) and not unexpected
    inputs = batched_inputs()
    for step in range(2):  # twice: g changes after the first step, the loss must not
        l_ref, s_ref = train_losses(ref, inputs, step)
        l_ours, s_ours = train_losses(ours, inputs, step)
        assert l_ref.keys() == l_ours.keys() == {"loss_cls", "loss_box_reg"}
        assert torch.equal(l_ref["loss_box_reg"], l_ours["loss_box_reg"])
        # same value up to fp32 rounding (EFL's fused kernel orders the operations differently)
        torch.testing.assert_close(l_ours["loss_cls"], l_ref["loss_cls"], rtol=1e-6, atol=0)
        assert s_ref["num_pos_anchors"] == s_ours["num_pos_anchors"] > 0
        assert ref.loss_normalizer == ours.loss_normalizer
        if step == 0:
            for m in (ref, ours):
                m.zero_grad()
                sum(l_ref.values() if m is ref else l_ours.values()).backward()
            for (name, p_ref), p_ours in zip(ref.named_parameters(), ours.parameters()):
                if p_ref.grad is not None:
                    torch.testing.assert_close(
                        p_ours.grad, p_ref.grad, rtol=1e-4, atol=1e-8, msg=name
                    )
            assert ours.efl.statistics.pos_grad.sum() > 0 and ours.efl.statistics.neg_grad.sum() > 0
    assert torch.all(ours.efl.focusing_factors()[0] == 2.0)


def test_num_pos_normalizer_all_reduced(monkeypatch):
    """Default normaliser: positives of the global batch / world size (>= 1), for both losses."""
    model = EFLRetinaNet(cfg_from(EFL_TINY, **{"MODEL.EFL.SCALE": 0.0}))
    anchors, logits, gt_labels, deltas, gt_boxes = case = dense_case(model.num_classes)
    labels = torch.stack(gt_labels)
    valid, fg = labels >= 0, (labels >= 0) & (labels != model.num_classes)
    num_pos = int(fg.sum())
    target = F.one_hot(labels[valid], model.num_classes + 1)[:, :-1].float()
    focal = sigmoid_focal_loss_jit(logits[0][valid], target, alpha=0.25, gamma=2.0, reduction="sum")
    gt_deltas = torch.stack(
        [model.box2box_transform.get_deltas(anchors[0].tensor, b) for b in gt_boxes]
    )
    box = smooth_l1_loss(deltas[0][fg], gt_deltas[fg], beta=0.0, reduction="sum")

    with EventStorage():
        single = model.losses(*case)
    torch.testing.assert_close(single["loss_cls"], focal / num_pos, rtol=1e-6, atol=0)
    torch.testing.assert_close(single["loss_box_reg"], box / num_pos)

    # Two processes, the other one with 10 positives: normaliser (num_pos + 10) / 2.
    monkeypatch.setattr(dense_efl.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(dense_efl, "all_reduce_sum", lambda t, group=None: t.add_(10.0))
    with EventStorage():
        double = model.losses(*case)
    normalizer = (num_pos + 10) / 2
    torch.testing.assert_close(double["loss_cls"], focal / normalizer, rtol=1e-6, atol=0)
    torch.testing.assert_close(double["loss_box_reg"], box / normalizer)


# ----------------------------------------------------------------------------- statistics


def test_focusing_and_weighting_switches():
    g = torch.tensor([1.0, 0.5, 0.0])
    out = {}
    for focusing, weighting in ((True, True), (True, False), (False, True)):
        loss = EFLClassificationLoss(3, use_focusing=focusing, use_weighting=weighting)
        with torch.no_grad():
            loss.statistics.pos_grad.copy_(g)
            loss.statistics.neg_grad.fill_(1.0)
        out[focusing, weighting] = loss.focusing_factors()
    full_gamma = torch.tensor([2.0, 6.0, 10.0])
    torch.testing.assert_close(out[True, True][0], full_gamma)
    torch.testing.assert_close(out[True, True][1], full_gamma / 2)
    torch.testing.assert_close(out[True, False][0], full_gamma)  # focusing only
    torch.testing.assert_close(out[True, False][1], torch.ones(3))
    torch.testing.assert_close(out[False, True][0], torch.full((3,), 2.0))  # weighting only
    torch.testing.assert_close(out[False, True][1], full_gamma / 2)
    model = build_model(cfg_from(EFL_TINY, **{"MODEL.EFL.USE_FOCUSING": False}))
    assert not model.efl.use_focusing and model.efl.use_weighting


# ----------------------------------------------------------------------------- ATSS


def _square(cx, cy, size):
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def test_atss_hand_computed_case():
    """k = 2, two levels, four GTs. Per GT: candidates = 2 closest centers per level; threshold =
    mean + sample std of their IoUs; positive if IoU >= threshold and center inside the GT.

    GT0 [0,0,10,10]: candidates a0 (IoU .6400), a1 (.5185), a7 (.3906), a8 (.3383);
        thr = .4719 + .1352 = .6071 -> a0.
    GT1 [8,0,20,8]: a2 (.5385), a4 (.4414), a8 (.2571), a7 (.1000); thr .5292 -> a2.
    GT2 [40,40,52,52]: a5 (.2500, inside), a6 (.3158, center x 52.2 OUTSIDE), a9, a8 (0);
        thr .3070 -> a6 passes the IoU test but not the center test: no positive.
    GT3 [0,1,10,10]: a0 (.7111), a1 (.5714), a7 (.3516), a8 (.3057); thr .6752 -> a0, whose IoU
        with GT3 (.7111) beats GT0 (.6400): a0 goes to GT3.
    """
    level0 = [
        _square(5, 5, 8),
        _square(7, 5, 8),
        _square(12, 5, 8),
        _square(30, 30, 8),
        _square(11, 3, 8),
        _square(46, 46, 6),
        _square(52.2, 46, 14),
    ]
    level1 = [_square(4, 6, 16), _square(9, 5, 16), _square(20, 20, 16)]
    gt = torch.tensor([[0, 0, 10, 10], [8, 0, 20, 8], [40, 40, 52, 52], [0, 1, 10, 10]]).float()
    result = ATSSMatcher(topk=2).assign([torch.tensor(level0), torch.tensor(level1)], gt)
    torch.testing.assert_close(
        result.iou_thresholds, torch.tensor([0.6071, 0.5292, 0.3070, 0.6752]), atol=1e-4, rtol=0
    )
    assert result.match_labels.tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert result.matches[[0, 2]].tolist() == [3, 1]
    assert [sorted(c) for c in result.candidate_idxs.t().tolist()] == [
        [0, 1, 7, 8],
        [2, 4, 7, 8],
        [5, 6, 8, 9],
        [0, 1, 7, 8],
    ]


def _atss_by_loops(levels, gts, k):
    """The ATSS rule written out with Python lists (the reference of the vectorised matcher)."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    def center(b):
        return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)

    anchors = [a for level in levels for a in level]
    best = [(-1.0, -1)] * len(anchors)
    for j, g in enumerate(gts):
        candidates, start = [], 0
        for level in levels:
            order = sorted(range(len(level)), key=lambda i: math.dist(center(level[i]), center(g)))
            candidates += [start + i for i in order[:k]]
            start += len(level)
        ious = [iou(anchors[i], g) for i in candidates]
        threshold = statistics.mean(ious) + statistics.stdev(ious)
        for i, v in zip(candidates, ious):
            cx, cy = center(anchors[i])
            inside = min(cx - g[0], cy - g[1], g[2] - cx, g[3] - cy) > 0.01
            if v >= threshold and inside and v > best[i][0]:
                best[i] = (v, j)
    return [b[1] for b in best]


def test_atss_matches_loop_reference():
    g = torch.Generator().manual_seed(3)
    levels = []
    for size, n in ((8, 40), (16, 20), (32, 10)):  # random (tie-free) centers, jittered sizes
        centers = torch.rand(n, 2, generator=g) * 64
        sizes = size * (0.8 + 0.4 * torch.rand(n, 2, generator=g))
        levels.append(torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1).double())
    xy = torch.rand(5, 2, generator=g) * 40
    gts = torch.cat([xy, xy + 6 + torch.rand(5, 2, generator=g) * 20], dim=1).double()
    matches, labels = ATSSMatcher(topk=5)(levels, gts)
    expected = _atss_by_loops([lv.tolist() for lv in levels], gts.tolist(), 5)
    assert labels.tolist() == [int(e >= 0) for e in expected]
    assert [m if lab else -1 for m, lab in zip(matches.tolist(), labels.tolist())] == expected
    assert 5 <= int(labels.sum()) < 70  # a non-trivial case

    # no GT: everything negative; k larger than a level: the whole level is a candidate
    m0, l0 = ATSSMatcher()(levels, gts[:0])
    assert m0.shape == l0.shape == (70,) and not l0.any()
    assert ATSSMatcher(topk=50).assign(levels, gts).candidate_idxs.shape == (40 + 20 + 10, 5)


def test_atss_labels_in_the_detector():
    model = build_model(cfg_from(IMPROVED_TINY)).train()
    inputs = batched_inputs()
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    anchors = model.anchor_generator([features[f] for f in model.head_in_features])
    gt_instances = [x["instances"] for x in inputs]
    gt_labels, gt_boxes = model.label_anchors(anchors, gt_instances)
    for labels, boxes, inst in zip(gt_labels, gt_boxes, gt_instances):
        matches, match_labels = model.anchor_matcher(
            [a.tensor for a in anchors], inst.gt_boxes.tensor
        )
        pos = match_labels == 1
        assert pos.any() and torch.all(labels[~pos] == model.num_classes)
        assert torch.equal(labels[pos], inst.gt_classes[matches[pos]])
        assert torch.equal(boxes[pos], inst.gt_boxes.tensor[matches[pos]])


# ----------------------------------------------------------------------------- IoU branch


def test_iou_branch_test_score_is_product():
    cfg = cfg_from(IMPROVED_TINY, **{"MODEL.RETINANET.SCORE_THRESH_TEST": 0.0})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # make the IoU logits vary, so the product is not a rescaling
        model.head.iou_pred.bias.normal_()
    captured = {}
    model.head.register_forward_hook(lambda m, i, out: captured.setdefault("head", out))
    inputs = [{"image": x["image"]} for x in batched_inputs()]
    with torch.no_grad():
        results = model(inputs)
    logits, _, ious = captured["head"]
    K = model.num_classes
    for img, result in enumerate(results):
        products = torch.cat(
            [
                lg[img].permute(1, 2, 0).reshape(-1, K).sigmoid()
                * io[img].permute(1, 2, 0).reshape(-1, 1).sigmoid()
                for lg, io in zip(logits, ious)
            ]
        ).flatten()
        scores = result["instances"].scores
        assert len(scores) > 0
        # every detection score is exactly one of the products sigmoid(cls) * sigmoid(iou)
        assert torch.all((scores[:, None] == products[None, :]).any(dim=1))
        assert scores.max() == products.max()

    # and what inference_single_image receives is exactly that product
    seen = []

    def record(anchors, box_cls, box_delta, image_size):
        seen.append(box_cls)
        return Instances(
            image_size,
            pred_boxes=Boxes(torch.zeros(0, 4)),
            scores=torch.zeros(0),
            pred_classes=torch.zeros(0, dtype=torch.int64),
        )

    model.inference_single_image = record
    captured.clear()
    with torch.no_grad():
        model(inputs[:1])
    logits, _, ious = captured["head"]
    for level, (lg, io) in enumerate(zip(logits, ious)):
        cls = lg[:1].permute(0, 2, 3, 1).reshape(-1, K)
        iou = io[:1].permute(0, 2, 3, 1).reshape(-1, 1)
        assert torch.equal(seen[0][level], cls.sigmoid() * iou.sigmoid())


def test_iou_branch_loss_by_hand():
    model = EFLRetinaNet(cfg_from(IMPROVED_TINY))
    anchors, logits, gt_labels, deltas, gt_boxes = dense_case(model.num_classes)
    g = torch.Generator().manual_seed(1)
    pred_iou = [torch.randn(2, anchors[0].tensor.shape[0], 1, generator=g)]
    with EventStorage():
        losses = model.losses(anchors, logits, gt_labels, deltas, gt_boxes, pred_iou=pred_iou)
    labels = torch.stack(gt_labels)
    fg = (labels >= 0) & (labels != model.num_classes)
    total = 0.0
    for n, r in torch.nonzero(fg).tolist():
        box = model.box2box_transform.apply_deltas(
            deltas[0][n, r : r + 1], anchors[0].tensor[r : r + 1]
        )[0]
        gt = gt_boxes[n][r]
        iw = (torch.min(box[2], gt[2]) - torch.max(box[0], gt[0])).clamp(min=0)
        ih = (torch.min(box[3], gt[3]) - torch.max(box[1], gt[1])).clamp(min=0)
        inter = iw * ih
        union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
        t, x = (inter / union).item(), pred_iou[0][n, r, 0].item()
        total += -(
            t * math.log(1 / (1 + math.exp(-x))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-x)))
        )
    assert losses["loss_iou"].item() == pytest.approx(total / int(fg.sum()), rel=1e-5)


# ----------------------------------------------------------------------------- tiny configs


@pytest.mark.parametrize(
    "config",
    [EFL_TINY, IMPROVED_TINY, LIBRA_EFL_TINY],
    ids=["efl", "improved_baseline", "libra_efl"],
)
def test_tiny_config_trains_one_step(config):
    model = build_model(cfg_from(config)).train()
    losses, scalars = train_losses(model, batched_inputs())
    expected = {"loss_cls", "loss_box_reg"} | ({"loss_iou"} if model.iou_branch else set())
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(x).all() for x in grads)
    assert model.head.cls_score.weight.grad.abs().sum() > 0
    if model.iou_branch:
        assert model.head.iou_pred.weight.grad.abs().sum() > 0
    assert "efl/gamma/r" in scalars and model.efl.statistics.neg_grad.sum() > 0


def test_train_net_end_to_end_logs_statistics(run_script, tmp_path):
    out = tmp_path / "efl"
    run_script(
        "projects/train_net.py",
        "--config-file",
        EFL_TINY,
        "SOLVER.MAX_ITER",
        "3",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
        *TINY_INPUT,
    )
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    logged = {k for r in records for k in r}
    for name in ("grad_ratio", "gamma", "weight"):
        for group in ("r", "c", "f", "all"):
            assert f"efl/{name}/{group}" in logged, (name, group)
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert final["efl.statistics.neg_grad"].sum() > 0
