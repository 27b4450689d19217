"""Bucketed Class Re-weighting (Libra R-CNN journal, Eq. 20-23)."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from libra_d2.layers.class_reweighting import (
    BCRSigmoidCELoss,
    bcr_sigmoid_ce_loss,
    bucket_indices,
    bucketed_class_weights,
    class_frequencies,
)


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def sp(z):  # softplus = -log(1 - sigmoid(z)) = BCE of a negative
    return math.log1p(math.exp(z))


# ---------------------------------------------------------------- weights


def test_weights_for_decades_by_hand():
    # ln f = k ln 10, k = 0..9; position (k/9)*10 -> bucket k; x = k/9; w = sigmoid((x - 0.5)/0.025)
    freqs = [10.0**k for k in range(10)]
    assert bucket_indices(freqs).tolist() == list(range(10))
    w = bucketed_class_weights(freqs)
    expected = [sig((k / 9 - 0.5) / 0.025) for k in range(10)]
    assert w.dtype == torch.float32 and w.shape == (10,)
    assert torch.allclose(w, torch.tensor(expected), rtol=1e-5, atol=1e-12)
    assert (
        w[0].item() < 1e-8
        and w[9].item() > 1 - 1e-6
        and w[4].item() == pytest.approx(0.0977, abs=1e-4)
    )


def test_weights_uneven_and_on_bucket_edges():
    # ln: 0, 0.693, 6.908, 13.816 -> positions 0, 0.50, 5.0 (exactly an edge), 10 -> buckets 0, 0,
    # 5, 9
    freqs = [1.0, 2.0, 1000.0, 1e6]
    assert bucket_indices(freqs).tolist() == [0, 0, 5, 9]
    w = bucketed_class_weights(freqs, num_buckets=10, turning_point=0.5, temperature=0.025)
    expected = [sig(-20.0), sig(-20.0), sig((5 / 9 - 0.5) / 0.025), sig(20.0)]
    assert torch.allclose(w, torch.tensor(expected), rtol=1e-6, atol=1e-12)
    # powers of 2 over 10 buckets: every position is an integer k in exact arithmetic, but
    # ln(2^k)/ln(2^10)*10 evaluates to 0.9999999999999999, 1.9999999999999998, ... in float64; edges
    # belong to the upper bucket.
    assert bucket_indices([2.0**k for k in range(11)]).tolist() == list(range(10)) + [9]
    # other hyper-parameters: S = 3, a = 0.3, t = 0.1 on [1, 10, 100, 1000]: positions 0, 1, 2, 3 ->
    # 0, 1, 2, 2
    assert bucket_indices([1, 10, 100, 1000], 3).tolist() == [0, 1, 2, 2]
    w = bucketed_class_weights([1, 10, 100, 1000], 3, 0.3, 0.1)
    expected = [sig((x - 0.3) / 0.1) for x in (0.0, 0.5, 1.0, 1.0)]
    assert torch.allclose(w, torch.tensor(expected), rtol=1e-6)


def test_weights_are_unit_free_and_monotone():
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(1, 5000, (300,), generator=gen).double()
    w1 = bucketed_class_weights(counts)
    w2 = bucketed_class_weights(counts / counts.sum())
    assert torch.equal(w1, w2)
    order = torch.argsort(counts)
    assert (w1[order][1:] >= w1[order][:-1]).all()


def test_equal_and_zero_frequencies():
    for freqs in ([7, 7, 7], [3], [0, 0]):
        assert bucket_indices(freqs).tolist() == [9] * len(freqs)
        assert torch.allclose(bucketed_class_weights(freqs), torch.ones(len(freqs)), atol=1e-8)
    # zero joins the rarest bucket, range unchanged (min positive = 10)
    assert bucket_indices([0, 10, 100, 1000], 3).tolist() == [0, 0, 1, 2]
    # image-count convention: a class seen in no image counts as seen in one
    assert bucket_indices([0, 10, 100, 1000], 4, min_frequency=1.0).tolist() == [0, 1, 2, 3]
    w = bucketed_class_weights([0, 10, 100])
    assert torch.isfinite(w).all()
    with pytest.raises(ValueError):
        bucketed_class_weights([1, -2, 3])
    with pytest.raises(ValueError):
        bucketed_class_weights([1, 2], num_buckets=1)
    with pytest.raises(ValueError):
        bucketed_class_weights([1, 2], temperature=0.0)
    with pytest.raises(ValueError):
        bucketed_class_weights([])


# ---------------------------------------------------------------- frequency source


def test_class_frequencies_from_metadata():
    meta = [
        {"id": i, "image_count": c, "instance_count": 2 * c}
        for i, c in [(1, 64), (2, 5), (3, 1), (4, 900)]
    ]
    random.Random(0).shuffle(meta)
    assert class_frequencies(meta).tolist() == [64.0, 5.0, 1.0, 900.0]
    assert class_frequencies(meta, count_key="instance_count").tolist() == [
        128.0,
        10.0,
        2.0,
        1800.0,
    ]
    mapping = {1: 3, 2: 2, 3: 1, 4: 0}
    assert class_frequencies(meta, dataset_id_to_contiguous_id=mapping).tolist() == [
        900.0,
        1.0,
        5.0,
        64.0,
    ]
    # non-contiguous ids without a mapping: rank order
    meta2 = [{"id": 10, "image_count": 3}, {"id": 2, "image_count": 8}]
    assert class_frequencies(meta2).tolist() == [8.0, 3.0]
    assert class_frequencies([3, 1, 2]).tolist() == [3.0, 1.0, 2.0]
    assert class_frequencies(torch.tensor([4, 5])).dtype == torch.float64
    with pytest.raises(ValueError):
        class_frequencies([1, 2, 3], num_classes=4)
    with pytest.raises(ValueError):
        class_frequencies(meta2 + [{"id": 2, "image_count": 1}])
    with pytest.raises(ValueError):
        class_frequencies(meta2, dataset_id_to_contiguous_id={10: 0, 2: 1, 7: 2})  # class 2 missing
    assert torch.equal(bucketed_class_weights(meta), bucketed_class_weights([64, 5, 1, 900]))


# ---------------------------------------------------------------- loss

LOGITS = [[2.0, -1.0, 0.5, -0.3], [0.2, 1.5, -2.0, 0.7], [-0.4, 0.9, 3.0, 1.2]]
GT = [0, 2, 3]  # C = 3 foreground classes, 3 = background
W = [0.1, 0.5, 0.9]


def test_loss_3x4_by_hand():
    logits, gt, w = torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(GT), torch.tensor(W)
    # Row 0 (class 0): own class positive (w 1), classes 1, 2 negatives (w 0.5, 0.9), background
    # negative (w 1).
    row0 = (sp(2.0) - 2.0) + 0.5 * sp(-1.0) + 0.9 * sp(0.5) + 1.0 * sp(-0.3)
    # Row 1 (class 2): classes 0, 1 negatives (0.1, 0.5), own class positive, background negative.
    row1 = 0.1 * sp(0.2) + 0.5 * sp(1.5) + (sp(-2.0) + 2.0) + 1.0 * sp(0.7)
    # Row 2 (background): all foreground classes are weighted negatives, background column positive.
    row2 = 0.1 * sp(-0.4) + 0.5 * sp(0.9) + 0.9 * sp(3.0) + (sp(1.2) - 1.2)
    got = bcr_sigmoid_ce_loss(logits, gt, w)
    assert got.item() == pytest.approx((row0 + row1 + row2) / 3, rel=1e-6)
    assert bcr_sigmoid_ce_loss(logits, gt, w, reduction="sum").item() == pytest.approx(
        row0 + row1 + row2, rel=1e-6
    )
    assert bcr_sigmoid_ce_loss(logits, gt, w, reduction="none").shape == (3, 4)
    # Background column dropped (Detectron2 use_sigmoid_ce convention): no column-3 terms.
    row0b = row0 - sp(-0.3)
    row1b = row1 - sp(0.7)
    row2b = row2 - (sp(1.2) - 1.2)
    got = bcr_sigmoid_ce_loss(logits, gt, w, include_background=False)
    assert got.item() == pytest.approx((row0b + row1b + row2b) / 3, rel=1e-6)
    assert bcr_sigmoid_ce_loss(logits, gt, w, reduction="none", include_background=False).shape == (
        3,
        3,
    )


def test_loss_gradients_only_negative_terms_are_scaled():
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    bcr_sigmoid_ce_loss(logits, torch.tensor(GT), torch.tensor(W)).backward()
    p = torch.sigmoid(logits.detach())
    y = F.one_hot(torch.tensor(GT), 4).double()
    weight = torch.tensor(
        [[1.0, 0.5, 0.9, 1.0], [0.1, 0.5, 1.0, 1.0], [0.1, 0.5, 0.9, 1.0]], dtype=torch.float64
    )
    assert torch.allclose(logits.grad, weight * (p - y) / 3, rtol=1e-6)


def test_unit_weights_equal_plain_sigmoid_ce():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(10, 6, generator=gen)
    gt = torch.randint(0, 6, (10,), generator=gen)
    plain = (
        F.binary_cross_entropy_with_logits(logits, F.one_hot(gt, 6).float(), reduction="sum") / 10
    )
    assert torch.allclose(bcr_sigmoid_ce_loss(logits, gt, torch.ones(5)), plain)
    # and down-weighting rare classes lowers the loss
    assert bcr_sigmoid_ce_loss(logits, gt, torch.full((5,), 0.3)) < plain


def test_extreme_logits_and_empty():
    logits = torch.tensor(
        [[100.0, -100.0, 100.0, -100.0], [-100.0, 100.0, -100.0, 100.0]], requires_grad=True
    )
    loss = bcr_sigmoid_ce_loss(logits, torch.tensor([1, 3]), torch.tensor([1e-9, 0.5, 1.0]))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    empty = torch.zeros(0, 4, requires_grad=True)
    out = bcr_sigmoid_ce_loss(empty, torch.zeros(0, dtype=torch.long), torch.ones(3))
    assert out.item() == 0.0 and out.requires_grad
    with pytest.raises(ValueError):
        bcr_sigmoid_ce_loss(torch.zeros(2, 4), torch.tensor([0, 4]), torch.ones(3))
    with pytest.raises(ValueError):
        bcr_sigmoid_ce_loss(torch.zeros(2, 4), torch.tensor([0, 1]), torch.ones(4))


def test_module():
    freqs = [10.0**k for k in range(3)]
    mod = BCRSigmoidCELoss.from_frequencies(
        freqs, num_buckets=3, turning_point=0.5, temperature=0.1
    )
    assert torch.allclose(mod.class_weights, bucketed_class_weights(freqs, 3, 0.5, 0.1))
    assert "class_weights" in mod.state_dict()
    logits, gt = torch.tensor(LOGITS), torch.tensor(GT)
    assert torch.allclose(mod(logits, gt), bcr_sigmoid_ce_loss(logits, gt, mod.class_weights))


def _grads(logits, gt, w, **kwargs):
    x = logits.clone().requires_grad_(True)
    bcr_sigmoid_ce_loss(x, gt, w, reduction="sum", **kwargs).backward()
    return x.grad


def test_background_rois_excluded_from_the_reweighting():
    """EXCLUDE_BACKGROUND: a background RoI sends the same "not me" gradient to a rare and a
    frequent column (as plain sigmoid CE); the literal form scales the rare one by its w_j."""
    w = torch.tensor([1e-6, 1.0, 0.3])  # rare, frequent, common; column 3 = background
    logits = torch.zeros(1, 4)
    bg = torch.tensor([3])
    excluded = _grads(logits, bg, w, exclude_background_rois=True)
    assert excluded[0, 0] == excluded[0, 1] > 0
    plain = _grads(logits, bg, torch.ones(3))
    torch.testing.assert_close(excluded, plain)
    literal = _grads(logits, bg, w)
    torch.testing.assert_close(literal[0, :3], excluded[0, :3] * w)


@pytest.mark.parametrize("exclude", [False, True])
def test_foreground_roi_scales_other_classes_negatives(exclude):
    """A foreground RoI of class t: the other foreground columns' negatives are scaled by w_j
    in both forms; its own column and the background column are not."""
    w = torch.tensor([1e-6, 1.0, 0.3])
    logits = torch.zeros(1, 4)
    fg = torch.tensor([1])
    g = _grads(logits, fg, w, exclude_background_rois=exclude)
    unit = _grads(logits, fg, torch.ones(3))
    torch.testing.assert_close(g[0, [0, 2]], unit[0, [0, 2]] * w[[0, 2]])
    torch.testing.assert_close(g[0, [1, 3]], unit[0, [1, 3]])


def test_exclude_background_switch_reaches_the_predictor():
    from detectron2.modeling import build_model
    from tiny_models import tiny_cfg

    cfg = tiny_cfg(
        "MODEL.ROI_HEADS.NAME",
        "LibraROIHeads",
        "MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE",
        "bcr",
        "MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND",
        True,
    )
    assert build_model(cfg).roi_heads.box_predictor.bcr_exclude_background is True
