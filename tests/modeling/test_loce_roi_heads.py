"""LOCE's box predictor and ROI heads: EBL through the predictor, the mean-score update from the
positives of each GT, memory rows in both losses, track-only mode = Libra's losses."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tiny_models import fixed_batched_inputs, tiny_cfg

from libra_d2.modeling.feature_memory import FeatureMemory
from libra_d2.modeling.roi_heads import (
    LibraFastRCNNOutputLayers,
    LOCEFastRCNNOutputLayers,
    LOCEROIHeads,
    MemoryBatch,
)
from libra_d2.modeling.roi_heads.loce_roi_heads import GT_INDEX_FIELD

C = 32


def predictor(cls=LOCEFastRCNNOutputLayers, *opts, seed=0):
    from detectron2.layers import ShapeSpec

    cfg = tiny_cfg("MODEL.ROI_HEADS.NAME", "LOCEROIHeads", *opts)
    torch.manual_seed(seed)
    return cls(cfg, ShapeSpec(channels=16))


def proposals_fixture():
    """Two images: image 0 has GTs 0 (class 3) and 1 (class 7); image 1 has GT 0 (class 3)."""
    p0 = Instances((64, 64))
    p0.proposal_boxes = Boxes(
        torch.tensor(
            [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 40, 40], [5, 5, 9, 9]], dtype=torch.float32
        )
    )
    p0.gt_boxes = Boxes(
        torch.tensor(
            [[0, 0, 10, 12], [0, 0, 10, 12], [21, 20, 40, 41], [0, 0, 10, 12]], dtype=torch.float32
        )
    )
    p0.gt_classes = torch.tensor([3, 3, 7, C])  # last one background
    p0.set(GT_INDEX_FIELD, torch.tensor([0, 0, 1, 0]))
    p1 = Instances((64, 64))
    p1.proposal_boxes = Boxes(torch.tensor([[2, 2, 30, 30], [0, 0, 5, 5]], dtype=torch.float32))
    p1.gt_boxes = Boxes(torch.tensor([[3, 2, 30, 31], [3, 2, 30, 31]], dtype=torch.float32))
    p1.gt_classes = torch.tensor([3, C])
    p1.set(GT_INDEX_FIELD, torch.tensor([0, 0]))
    return [p0, p1]


def predictions(pred, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    return pred(x)


def test_ebl_with_equal_scores_is_ce_through_the_predictor():
    ebl = predictor(LOCEFastRCNNOutputLayers, "MODEL.LOCE.EQUILIBRIUM_LOSS", True)
    plain = predictor(LibraFastRCNNOutputLayers)
    plain.load_state_dict({k: v for k, v in ebl.state_dict().items() if "mean_score" not in k})
    props = proposals_fixture()
    ebl.eval(), plain.eval()  # no update of s: all foreground entries equal (0.01)
    with EventStorage():
        a = ebl.losses(predictions(ebl, 6), props)
        b = plain.losses(predictions(plain, 6), props)
    assert torch.equal(a["loss_cls"], b["loss_cls"])
    # and unequal scores change it (the test can fail)
    ebl.mean_score.score[3] = 0.5
    with EventStorage():
        c = ebl.losses(predictions(ebl, 6), props)
    assert not torch.allclose(c["loss_cls"], b["loss_cls"])


def test_mean_score_update_equals_hand_computation():
    pred = predictor(LOCEFastRCNNOutputLayers)
    pred.train()
    props = proposals_fixture()
    scores, deltas = predictions(pred, 6)
    probs = F.softmax(scores.detach(), dim=1)
    # entries: (image 0, GT 0): class 3, rows 0, 1; (image 0, GT 1): class 7, row 2;
    # (image 1, GT 0): class 3, row 4; memory: class 5 twice (rows 6, 7), class 9 once (row 8)
    mem_scores = torch.randn(3, C + 1)
    mprobs = F.softmax(mem_scores, dim=1)
    memory = MemoryBatch(torch.zeros(3, 1), torch.zeros(3, 4), torch.tensor([5, 5, 9]))
    all_scores = torch.cat([scores, mem_scores])
    all_deltas = torch.cat([deltas, torch.zeros(3, deltas.shape[1])])
    with EventStorage():
        pred.losses((all_scores, all_deltas), props, memory=memory)
    a = 0.9
    e3 = [(probs[0, 3] + probs[1, 3]) / 2, probs[4, 3]]
    expect = torch.full((C + 1,), 0.01)
    expect[3] = a**2 * 0.01 + (1 - a**2) * (e3[0] + e3[1]) / 2
    expect[7] = a * 0.01 + (1 - a) * probs[2, 7]
    expect[5] = a * 0.01 + (1 - a) * (mprobs[0, 5] + mprobs[1, 5]) / 2
    expect[9] = a * 0.01 + (1 - a) * mprobs[2, 9]
    expect[C] = 0.01  # background constant
    assert torch.allclose(pred.mean_score.score, expect, atol=1e-7)
    # it happens before the loss of the same step: EBL there uses the updated s
    assert pred.mean_score.score[3] > 0.01


def test_track_only_losses_equal_libra_losses():
    loce = predictor(LOCEFastRCNNOutputLayers)
    libra = predictor(LibraFastRCNNOutputLayers)
    libra.load_state_dict({k: v for k, v in loce.state_dict().items() if "mean_score" not in k})
    loce.train(), libra.train()
    props = proposals_fixture()
    with EventStorage():
        a = loce.losses(predictions(loce, 6), props)
        b = libra.losses(predictions(libra, 6), props)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(loce.mean_score.score, torch.full((C + 1,), 0.01))  # tracked


def test_memory_rows_enter_both_losses():
    pred = predictor(LOCEFastRCNNOutputLayers)
    pred.eval()  # keep s fixed
    props = proposals_fixture()
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    mem_x = torch.randn(4, 16, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    labels = torch.tensor([2, 2, 11, 11])
    targets = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    memory = MemoryBatch(torch.zeros(4, 1), targets, labels)
    with EventStorage():
        base = pred.losses(pred(x), props)
        scores, deltas = pred(torch.cat([x, mem_x]))
        both = pred.losses((scores, deltas), props, memory=memory)
    n, nm = 6, 4
    # classification: CE over all 10 rows
    all_labels = torch.cat([torch.cat([p.gt_classes for p in props]), labels])
    assert torch.allclose(both["loss_cls"], F.cross_entropy(scores, all_labels))
    # regression: (proposal sum + memory sum) / all rows, memory deltas of each row's own class
    mem_pred = deltas[n:].view(nm, C, 4)[torch.arange(nm), labels]
    mem_sum = (
        F.smooth_l1_loss(mem_pred, targets, beta=pred.smooth_l1_beta, reduction="sum")
        if pred.smooth_l1_beta > 0
        else (mem_pred - targets).abs().sum()
    )
    assert torch.allclose(both["loss_box_reg"], (base["loss_box_reg"] * n + mem_sum) / (n + nm))
    # gradients reach the memory rows through both losses
    (g_cls,) = torch.autograd.grad(both["loss_cls"], mem_x, retain_graph=True)
    (g_reg,) = torch.autograd.grad(both["loss_box_reg"], mem_x)
    assert g_cls.abs().sum() > 0 and g_reg.abs().sum() > 0
    with pytest.raises(ValueError, match="prediction rows"):
        pred.losses((scores[:8], deltas[:8]), props, memory=memory)


def test_heads_push_jittered_gt_and_consume_the_memory_batch():
    torch.manual_seed(0)
    cfg = tiny_cfg("MODEL.ROI_HEADS.NAME", "LOCEROIHeads", "MODEL.LOCE.EQUILIBRIUM_LOSS", True)
    model = build_model(cfg)
    model.train()
    heads = model.roi_heads
    assert isinstance(heads, LOCEROIHeads) and heads.memory_feature_shape == (64, 7, 7)
    memory = FeatureMemory(C, 80, heads.memory_feature_shape)
    heads.attach_memory(memory)
    batch = fixed_batched_inputs()  # GTs: classes 1, 5 (image 0) and 31 (image 1)
    with EventStorage():
        model(batch)
    assert memory.count.tolist() == [16 if c in (1, 5, 31) else 0 for c in range(C)]
    feats, targets, labels = memory.sample(torch.tensor([1, 31]), 4)
    heads.set_memory_batch(MemoryBatch(feats, targets, labels))
    seen = {}
    orig = heads.box_predictor.losses

    def spy(predictions, proposals, memory=None):
        seen["rows"] = predictions[0].shape[0]
        seen["memory"] = memory
        return orig(predictions, proposals, memory=memory)

    heads.box_predictor.losses = spy
    with EventStorage():
        model(batch)
    assert seen["memory"] is not None and seen["memory"].num_rows == 8
    assert heads._memory_batch is None  # consumed
    with EventStorage():
        model(batch)
    assert seen["memory"] is None  # not reused on the next step
    assert memory.count[1] == 48  # 16 per step, three steps


def test_jittered_targets_decode_to_the_gt():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", "LOCEROIHeads"))
    heads = model.roi_heads
    batch = fixed_batched_inputs()
    images = model.preprocess_image(batch)
    features = model.backbone(images.tensor)
    targets = [b["instances"] for b in batch]
    pooled, deltas, labels = heads.pool_jittered_gt(features, targets)
    assert pooled.shape == (3 * 16, 64, 7, 7) and labels.tolist() == [1] * 16 + [5] * 16 + [31] * 16
    assert not pooled.requires_grad
    from libra_d2.modeling.feature_memory import jitter_boxes

    gt = targets[0].gt_boxes.tensor
    torch.manual_seed(5)
    _, d, _ = heads.pool_jittered_gt(features, targets)
    torch.manual_seed(5)  # image 0's boxes are jittered first: the same draws
    jittered = jitter_boxes(gt, 16, image_size=(64, 64))
    decoded = heads.box_predictor.box2box_transform.apply_deltas(d[:32], jittered)
    assert torch.allclose(decoded, gt.repeat_interleave(16, 0), atol=1e-3)


def test_config_errors():
    with pytest.raises(ValueError, match="CLS_LOSS_TYPE"):
        predictor(
            LOCEFastRCNNOutputLayers,
            "MODEL.LOCE.EQUILIBRIUM_LOSS",
            True,
            "MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE",
            "lgr_ce",
        )
    with pytest.raises(ValueError, match="BBOX_REG_LOSS_TYPE"):
        build_model(
            tiny_cfg(
                "MODEL.ROI_HEADS.NAME",
                "LOCEROIHeads",
                "MODEL.LOCE.MFS.ENABLED",
                True,
                "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
                "giou",
            )
        )


def test_mean_scores_are_checkpointed_and_inference_ignores_them():
    torch.manual_seed(0)
    model = build_model(
        tiny_cfg("MODEL.ROI_HEADS.NAME", "LOCEROIHeads", "MODEL.LOCE.EQUILIBRIUM_LOSS", True)
    )
    assert "roi_heads.box_predictor.mean_score.score" in model.state_dict()
    pred = model.roi_heads.box_predictor
    pred.eval()
    scores, deltas = pred(torch.randn(6, 256, generator=torch.Generator().manual_seed(1)))
    props = proposals_fixture()
    before = [p.clone() for p in pred.predict_probs((scores, deltas), props)]
    pred.mean_score.score[:5] = 0.9
    after = pred.predict_probs((scores, deltas), props)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
