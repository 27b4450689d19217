"""Tests of libra_d2.modeling.sampling (IoU-balanced negatives, instance/class-balanced
positives)."""

import dataclasses

import pytest
import torch
from detectron2.modeling.sampling import subsample_labels

from libra_d2.modeling import sampling as S
from libra_d2.modeling.sampling import (
    LibraSamplingConfig,
    class_balanced_positive_indices,
    instance_balanced_positive_indices,
    iou_balanced_negative_indices,
    libra_subsample_labels,
)

BG = 80
ALL_MODES = [(p, n) for p in S.POS_SAMPLING_MODES for n in S.NEG_SAMPLING_MODES]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_image(seed, num_props=400, num_gts=12, pos_frac=0.2, ignore_frac=0.05):
    """labels, max_ious, matched_idxs of a synthetic image (labels consistent with the IoUs)."""
    g = gen(seed)
    u = torch.rand(num_props, generator=g)
    max_ious = torch.where(
        u < pos_frac,
        0.5 + 0.5 * torch.rand(num_props, generator=g),
        0.5 * torch.rand(num_props, generator=g) ** 2,
    )
    max_ious[torch.rand(num_props, generator=g) < 0.1] = 0.0  # some IoU == 0 negatives
    matched = torch.randint(0, max(num_gts, 1), (num_props,), generator=g)
    gt_classes = torch.randint(0, BG, (max(num_gts, 1),), generator=g)
    labels = gt_classes[matched].clone()
    labels[max_ious < 0.5] = BG
    labels[torch.rand(num_props, generator=g) < ignore_frac] = -1
    return labels, max_ious, matched


def bin_of(ious, lo, hi, k):
    return ((ious - lo) / ((hi - lo) / k)).long().clamp(0, k - 1)


# --------------------------------------------------------------------------------------------
# IoU-balanced negatives
# --------------------------------------------------------------------------------------------
def test_every_bin_gets_its_share_when_populated():
    # bins of [0, 0.5) with iou_upper=0.5: [0, 1/6), [1/6, 1/3), [1/3, 1/2)
    ious = torch.cat([torch.full((200,), 0.05), torch.full((150,), 0.25), torch.full((100,), 0.45)])
    neg = torch.ones(450, dtype=torch.bool)
    for seed in range(5):
        idx = iou_balanced_negative_indices(
            neg, ious, 90, num_bins=3, iou_upper=0.5, generator=gen(seed)
        )
        assert idx.numel() == 90
        counts = torch.bincount(bin_of(ious[idx], 0.0, 0.5, 3), minlength=3).tolist()
        assert counts == [30, 30, 30]


def test_reference_upper_bound_is_max_iou_of_all_proposals():
    # a positive with IoU 0.9 sets the bins to [0, .3), [.3, .6), [.6, .9]; the top bin has no
    # negatives and the middle one only 20: it gives all of them, bin 0 fills the rest.
    ious = torch.cat([torch.full((300,), 0.1), torch.full((20,), 0.4), torch.tensor([0.9])])
    neg = torch.ones(321, dtype=torch.bool)
    neg[-1] = False
    for seed in range(5):
        idx = iou_balanced_negative_indices(neg, ious, 90, generator=gen(seed))
        assert idx.numel() == 90
        assert (ious[idx] == 0.4).sum() == 20
        assert (ious[idx] == 0.1).sum() == 70
        assert not (idx == 320).any()
    # with a fixed upper bound of 0.5 the 0.4 negatives are in the top bin [1/3, 0.5)
    idx = iou_balanced_negative_indices(neg, ious, 90, iou_upper=0.5, generator=gen(0))
    assert (ious[idx] == 0.4).sum() == 20


def test_shortfall_is_filled_uniformly_from_the_remaining_negatives():
    # bins [0,1/3) 600 members, [1/3,2/3) 200 members, top bin empty (max IoU 1.0): quota 100
    # each, the empty bin's 100 come from the 500 + 100 remaining at random, so the middle bin
    # gets 100 + 100 * 100 / 600 on average (a fill in random-order would give ~100).
    ious = torch.cat([torch.full((600,), 0.1), torch.full((200,), 0.45), torch.tensor([1.0])])
    neg = torch.ones(801, dtype=torch.bool)
    neg[-1] = False
    mids = []
    for seed in range(300):
        idx = iou_balanced_negative_indices(neg, ious, 300, generator=gen(seed))
        assert idx.numel() == 300
        mid = int((ious[idx] == 0.45).sum())
        assert mid >= 100
        mids.append(mid)
    mean = sum(mids) / len(mids)
    assert abs(mean - (100 + 100 / 6)) < 1.5, mean


def test_members_of_a_bin_are_chosen_uniformly():
    # bins (max IoU 1.0): [0, 1/3) has 50 members, [1/3, 2/3) 400; n = 60, quota 20 each, the
    # empty top bin's 20 are filled at random from the 30 + 380 left
    ious = torch.cat([torch.full((50,), 0.1), torch.full((400,), 0.45), torch.tensor([1.0])])
    neg = torch.ones(451, dtype=torch.bool)
    neg[-1] = False
    hits = torch.zeros(451)
    trials = 400
    for seed in range(trials):
        hits[iou_balanced_negative_indices(neg, ious, 60, generator=gen(seed))] += 1
    rates0, rates1 = hits[:50] / trials, hits[50:450] / trials
    assert abs(rates0.mean() - (20 + 20 * 30 / 410) / 50) < 0.02
    assert abs(rates1.mean() - (20 + 20 * 380 / 410) / 400) < 0.005
    # every member of a bin has the same chance (binomial spread only: sd ~0.015 / ~0.025)
    assert rates1.std() < 0.025 and rates0.std() < 0.04
    assert hits[450] == 0


@pytest.mark.parametrize("call", ["function", "subsample_labels", "config"])
def test_iou_zero_negatives_stay_eligible_on_every_call(call):
    """Regression test of the public reference's bug (floor_thr mutated from -1 to 0 after the
    first call, so IoU == 0 negatives were only used as filler afterwards)."""
    # 100 negatives with IoU 0, 100 with IoU 0.2, one positive (IoU 0.9): with floor_thr = -1
    # all 200 negatives share bin 0, so about half of the 60 samples have IoU 0 -- on every call.
    # The buggy sampler would take all 60 from the IoU 0.2 ones from the second call on.
    ious = torch.cat([torch.zeros(100), torch.full((100,), 0.2), torch.tensor([0.9])])
    labels = torch.full((201,), BG)
    labels[-1] = 3
    matched = torch.zeros(201, dtype=torch.int64)
    cfg = LibraSamplingConfig.libra()
    g = gen(0)
    for _ in range(20):
        if call == "function":
            idx = iou_balanced_negative_indices(labels == BG, ious, 60, floor_thr=-1.0, generator=g)
        elif call == "subsample_labels":
            _, idx = libra_subsample_labels(
                labels,
                61,
                1 / 61,
                BG,
                max_ious=ious,
                matched_idxs=matched,
                neg_sampling="iou_balanced",
                floor_thr=-1.0,
                generator=g,
            )
        else:
            _, idx = cfg.subsample(
                labels, 61, 1 / 61, BG, max_ious=ious, matched_idxs=matched, generator=g
            )
        assert idx.numel() == 60
        assert 10 <= int((ious[idx] == 0).sum()) <= 50
    assert cfg.floor_thr == -1.0


def test_floor_set_supplies_floor_fraction():
    # floor_thr 0.1: 200 floor negatives (IoU 0.05), 200 binned ones (IoU 0.3)
    ious = torch.cat([torch.full((200,), 0.05), torch.full((200,), 0.3), torch.tensor([1.0])])
    neg = torch.ones(401, dtype=torch.bool)
    neg[-1] = False
    idx = iou_balanced_negative_indices(
        neg, ious, 100, floor_thr=0.1, floor_fraction=0.5, generator=gen(0)
    )
    assert (ious[idx] < 0.1).sum() == 50 and (ious[idx] >= 0.1).sum() == 50
    idx = iou_balanced_negative_indices(
        neg, ious, 100, floor_thr=0.1, floor_fraction=0.2, generator=gen(0)
    )
    assert (ious[idx] < 0.1).sum() == 20
    # floor_fraction 0 with floor_thr >= 0: the floor set only fills what the bins cannot give
    idx = iou_balanced_negative_indices(
        neg, ious, 100, floor_thr=0.1, floor_fraction=0.0, generator=gen(0)
    )
    assert (ious[idx] < 0.1).sum() == 0
    idx = iou_balanced_negative_indices(
        neg, ious, 300, floor_thr=0.1, floor_fraction=0.0, generator=gen(0)
    )
    assert (ious[idx] < 0.1).sum() == 100 and (ious[idx] >= 0.1).sum() == 200


def test_floor_fraction_without_floor_set_only_lowers_the_quotas():
    ious = torch.cat([torch.full((200,), 0.05), torch.full((200,), 0.25), torch.full((200,), 0.45)])
    neg = torch.ones(600, dtype=torch.bool)
    seen = set()
    for seed in range(20):
        idx = iou_balanced_negative_indices(
            neg, ious, 90, floor_fraction=0.5, iou_upper=0.5, generator=gen(seed)
        )
        counts = torch.bincount(bin_of(ious[idx], 0.0, 0.5, 3), minlength=3).tolist()
        assert idx.numel() == 90 and min(counts) >= 15  # quota int(45 / 3), the other 45 at random
        seen.add(tuple(counts))
    assert len(seen) > 1


def test_floor_threshold_boundary_belongs_to_the_bins():
    ious = torch.cat([torch.full((100,), 0.05), torch.full((100,), 0.1), torch.tensor([1.0])])
    neg = torch.ones(201, dtype=torch.bool)
    neg[-1] = False
    idx = iou_balanced_negative_indices(
        neg, ious, 40, floor_thr=0.1, floor_fraction=0.5, generator=gen(0)
    )
    assert (ious[idx] == 0.05).sum() == 20 and (ious[idx] == 0.1).sum() == 20


def test_floor_set_short_or_binned_set_short():
    ious = torch.cat([torch.full((10,), 0.05), torch.full((200,), 0.3), torch.tensor([1.0])])
    neg = torch.ones(211, dtype=torch.bool)
    neg[-1] = False
    idx = iou_balanced_negative_indices(
        neg, ious, 100, floor_thr=0.1, floor_fraction=0.5, generator=gen(1)
    )
    assert idx.numel() == 100 and (ious[idx] < 0.1).sum() == 10  # binned set fills the gap
    ious = torch.cat([torch.full((200,), 0.05), torch.full((20,), 0.3), torch.tensor([1.0])])
    neg = torch.ones(221, dtype=torch.bool)
    neg[-1] = False
    idx = iou_balanced_negative_indices(
        neg, ious, 100, floor_thr=0.1, floor_fraction=0.5, generator=gen(1)
    )
    assert idx.numel() == 100 and (ious[idx] >= 0.1).sum() == 20  # all the binned ones


def test_floor_thr_zero_makes_iou_zero_the_floor_set():
    ious = torch.cat([torch.zeros(100), torch.full((100,), 0.01), torch.tensor([1.0])])
    neg = torch.ones(201, dtype=torch.bool)
    neg[-1] = False
    idx = iou_balanced_negative_indices(
        neg, ious, 50, floor_thr=0.0, floor_fraction=0.4, generator=gen(0)
    )
    assert (ious[idx] == 0).sum() == 20 and (ious[idx] == 0.01).sum() == 30


def test_negatives_above_a_fixed_upper_bound_go_to_the_top_bin():
    ious = torch.cat([torch.full((100,), 0.05), torch.full((100,), 0.45)])
    neg = torch.ones(200, dtype=torch.bool)
    idx = iou_balanced_negative_indices(neg, ious, 40, num_bins=2, iou_upper=0.3, generator=gen(0))
    assert (ious[idx] == 0.45).sum() == 20


def test_negative_sampler_edge_cases():
    ious = torch.rand(50) * 0.5
    neg = torch.zeros(50, dtype=torch.bool)
    assert iou_balanced_negative_indices(neg, ious, 10).numel() == 0
    neg[:5] = True
    assert sorted(iou_balanced_negative_indices(neg, ious, 10).tolist()) == [0, 1, 2, 3, 4]
    assert iou_balanced_negative_indices(torch.ones(50, dtype=torch.bool), ious, 0).numel() == 0
    assert (
        iou_balanced_negative_indices(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 10).numel()
        == 0
    )
    # all IoUs equal (e.g. an image without GT: every max IoU is 0): plain random sampling
    idx = iou_balanced_negative_indices(
        torch.ones(50, dtype=torch.bool), torch.zeros(50), 20, generator=gen(0)
    )
    assert idx.numel() == 20 and idx.unique().numel() == 20
    # index input == mask input
    mask = torch.rand(50, generator=gen(3)) < 0.7
    a = iou_balanced_negative_indices(mask, ious, 12, generator=gen(5))
    b = iou_balanced_negative_indices(mask.nonzero().flatten(), ious, 12, generator=gen(5))
    assert torch.equal(a, b)
    # K = 1: random sampling
    idx = iou_balanced_negative_indices(mask, ious, 12, num_bins=1, generator=gen(5))
    assert idx.numel() == 12 and mask[idx].all()
    with pytest.raises(ValueError):
        iou_balanced_negative_indices(mask, ious, 12, num_bins=0)
    with pytest.raises(ValueError):
        iou_balanced_negative_indices(mask, ious, 12, floor_fraction=1.5)


# --------------------------------------------------------------------------------------------
# positives
# --------------------------------------------------------------------------------------------
def test_instance_balanced_caps_and_top_up():
    # 4 GTs with 100, 50, 5, 2 positives; n = 40: cap = round(40 / 4) + 1 = 11
    matched = torch.cat(
        [torch.full((100,), 0), torch.full((50,), 1), torch.full((5,), 2), torch.full((2,), 3)]
    )
    pos = torch.ones(157, dtype=torch.bool)
    big = []
    for seed in range(50):
        idx = instance_balanced_positive_indices(pos, matched, 40, generator=gen(seed))
        assert idx.numel() == 40 and idx.unique().numel() == 40
        per_gt = torch.bincount(matched[idx], minlength=4).tolist()
        assert per_gt[2] == 5 and per_gt[3] == 2
        assert per_gt[0] >= 11 and per_gt[1] >= 11
        big.append(per_gt[0])
    # the 11 top-up positives come at random from the 89 + 39 left: GT 0 gets 11 + 11 * 89/128
    assert abs(sum(big) / len(big) - (11 + 11 * 89 / 128)) < 1.0


@pytest.mark.parametrize("mode", ["instance", "class"])
def test_positives_inside_a_gt_are_chosen_uniformly(mode):
    matched = torch.cat([torch.zeros(100, dtype=torch.int64), torch.ones(100, dtype=torch.int64)])
    classes = torch.cat([torch.zeros(100, dtype=torch.int64), torch.ones(100, dtype=torch.int64)])
    pos = torch.ones(200, dtype=torch.bool)
    hits = torch.zeros(200)
    trials = 300
    for seed in range(trials):
        if mode == "instance":
            idx = instance_balanced_positive_indices(pos, matched, 20, generator=gen(seed))
        else:
            idx = class_balanced_positive_indices(pos, classes, matched, 20, generator=gen(seed))
        hits[idx] += 1
    rates = hits / trials  # 10 of 100 per GT: 0.1 each, binomial sd ~0.017
    assert abs(rates.mean() - 0.1) < 1e-6
    assert rates.std() < 0.03 and rates.max() < 0.2


def test_instance_balanced_truncation_keeps_gts_equal():
    # 10 GTs x 30 positives, n = 64: cap = round(6.4) + 1 = 7, 70 > 64 -> 6 or 7 each
    matched = torch.arange(10).repeat_interleave(30)
    pos = torch.ones(300, dtype=torch.bool)
    for seed in range(20):
        idx = instance_balanced_positive_indices(pos, matched, 64, generator=gen(seed))
        per_gt = torch.bincount(matched[idx], minlength=10)
        assert idx.numel() == 64 and set(per_gt.tolist()) <= {6, 7}
    # a GT with few positives is not starved by a crowded one
    matched = torch.cat([torch.zeros(500, dtype=torch.int64), torch.ones(8, dtype=torch.int64)])
    idx = instance_balanced_positive_indices(
        torch.ones(508, dtype=torch.bool), matched, 32, generator=gen(0)
    )
    assert (matched[idx] == 1).sum() == 8


def test_instance_balanced_only_counts_gts_with_positives():
    matched = torch.cat([torch.full((60,), 7), torch.full((60,), 3)])  # GT ids 3 and 7 only
    idx = instance_balanced_positive_indices(
        torch.ones(120, dtype=torch.bool), matched, 20, generator=gen(0)
    )
    assert torch.bincount(matched[idx], minlength=8)[[3, 7]].tolist() == [10, 10]


def test_class_balanced_equalises_a_skewed_class_mix():
    # class 0: 10 GTs x 30 positives, class 1: 100 positives (2 GTs), class 2: 50 (1 GT)
    matched = torch.cat(
        [
            torch.arange(10).repeat_interleave(30),
            torch.full((50,), 10),
            torch.full((50,), 11),
            torch.full((50,), 12),
        ]
    )
    classes = torch.cat([torch.zeros(300), torch.ones(100), torch.full((50,), 2)]).long()
    pos = torch.ones(450, dtype=torch.bool)
    for seed in range(20):
        idx = class_balanced_positive_indices(pos, classes, matched, 60, generator=gen(seed))
        assert idx.numel() == 60 and idx.unique().numel() == 60
        assert torch.bincount(classes[idx], minlength=3).tolist() == [20, 20, 20]
        # inside class 0, 2 per GT; inside class 1, 10 per GT
        assert torch.bincount(matched[idx][classes[idx] == 0], minlength=10).tolist() == [2] * 10
        assert torch.bincount(matched[idx][classes[idx] == 1], minlength=12)[10:].tolist() == [
            10,
            10,
        ]


def test_class_balanced_small_classes_are_kept_whole():
    matched = torch.cat(
        [
            torch.arange(10).repeat_interleave(30),
            torch.full((10,), 10),
            torch.full((10,), 11),
            torch.full((4,), 12),
        ]
    )
    classes = torch.cat([torch.zeros(300), torch.ones(20), torch.full((4,), 2)]).long()
    pos = torch.ones(324, dtype=torch.bool)
    idx = class_balanced_positive_indices(pos, classes, matched, 60, generator=gen(0))
    per_cls = torch.bincount(classes[idx], minlength=3).tolist()
    assert per_cls == [36, 20, 4]  # cap 21 + top-up 15 from class 0
    assert torch.bincount(matched[idx][classes[idx] == 0], minlength=10).min() >= 2


def test_positive_sampler_edge_cases():
    matched = torch.zeros(10, dtype=torch.int64)
    for fn in (
        lambda p, n: instance_balanced_positive_indices(p, matched, n),
        lambda p, n: class_balanced_positive_indices(p, matched, matched, n),
    ):
        assert fn(torch.zeros(10, dtype=torch.bool), 5).numel() == 0
        assert fn(torch.ones(10, dtype=torch.bool), 0).numel() == 0
        assert fn(torch.ones(10, dtype=torch.bool), 20).numel() == 10
        assert fn(torch.ones(10, dtype=torch.bool), 4).numel() == 4
        assert fn(torch.zeros(0, dtype=torch.bool), 4).numel() == 0


def test_rank_paths_agree(monkeypatch):
    group = torch.randint(0, 7, (300,), generator=gen(0))
    r1, c1 = S._ranks_in_order(group, 7)
    monkeypatch.setattr(S, "_ONE_HOT_MAX_ELEMENTS", 0)
    monkeypatch.setattr(S, "_ONE_HOT_MAX_GROUPS", 0)
    r2, c2 = S._ranks_in_order(group, 7)
    assert torch.equal(r1.long(), r2.long()) and torch.equal(c1.long(), c2.long())
    brute = torch.tensor([int((group[: i + 1] == group[i]).sum()) for i in range(300)])
    assert torch.equal(r1.long(), brute)
    assert c1.tolist() == torch.bincount(group, minlength=7).tolist()
    # the samplers give the same result on the sort path
    labels, max_ious, matched = random_image(4, num_props=600)
    out_sort = libra_subsample_labels(
        labels,
        128,
        0.25,
        BG,
        max_ious=max_ious,
        matched_idxs=matched,
        pos_sampling="class",
        neg_sampling="iou_balanced",
        generator=gen(9),
    )
    monkeypatch.setattr(S, "_ONE_HOT_MAX_ELEMENTS", 1 << 15)
    monkeypatch.setattr(S, "_ONE_HOT_MAX_GROUPS", 16)
    out_hot = libra_subsample_labels(
        labels,
        128,
        0.25,
        BG,
        max_ious=max_ious,
        matched_idxs=matched,
        pos_sampling="class",
        neg_sampling="iou_balanced",
        generator=gen(9),
    )
    assert all(torch.equal(a, b) for a, b in zip(out_sort, out_hot))


# --------------------------------------------------------------------------------------------
# libra_subsample_labels contract
# --------------------------------------------------------------------------------------------
def check_contract(labels, pos_idx, neg_idx, num_samples, positive_fraction, bg=BG):
    positive = ((labels != -1) & (labels != bg)).nonzero().flatten()
    negative = (labels == bg).nonzero().flatten()
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    assert pos_idx.dtype == torch.int64 and neg_idx.dtype == torch.int64
    assert pos_idx.numel() == num_pos and neg_idx.numel() == num_neg
    assert pos_idx.unique().numel() == num_pos and neg_idx.unique().numel() == num_neg
    assert ((labels[pos_idx] != -1) & (labels[pos_idx] != bg)).all()
    assert (labels[neg_idx] == bg).all()


@pytest.mark.parametrize("pos_mode,neg_mode", ALL_MODES)
def test_counts_match_detectron2_on_random_inputs(pos_mode, neg_mode):
    for seed in range(25):
        g = gen(1000 + seed)
        num_props = int(torch.randint(0, 700, (1,), generator=g))
        num_gts = int(torch.randint(0, 25, (1,), generator=g))
        labels, max_ious, matched = random_image(
            seed, num_props, num_gts, pos_frac=float(torch.rand(1, generator=g))
        )
        num_samples = int(torch.randint(1, 600, (1,), generator=g))
        fraction = float(torch.rand(1, generator=g))
        d2_pos, d2_neg = subsample_labels(labels, num_samples, fraction, BG)
        pos_idx, neg_idx = libra_subsample_labels(
            labels,
            num_samples,
            fraction,
            BG,
            max_ious=max_ious,
            matched_idxs=matched,
            pos_sampling=pos_mode,
            neg_sampling=neg_mode,
            generator=gen(seed),
        )
        assert pos_idx.numel() == d2_pos.numel() and neg_idx.numel() == d2_neg.numel()
        check_contract(labels, pos_idx, neg_idx, num_samples, fraction)


def test_random_random_is_detectron2():
    for seed in range(10):
        labels, max_ious, matched = random_image(seed, 500)
        torch.manual_seed(seed)
        expected = subsample_labels(labels, 256, 0.25, BG)
        torch.manual_seed(seed)
        got = libra_subsample_labels(labels, 256, 0.25, BG)
        assert all(torch.equal(a, b) for a, b in zip(expected, got))


@pytest.mark.parametrize("pos_mode,neg_mode", ALL_MODES)
def test_empty_and_degenerate_inputs(pos_mode, neg_mode):
    kw = dict(pos_sampling=pos_mode, neg_sampling=neg_mode)
    cases = [
        torch.full((0,), BG),  # no proposals
        torch.full((50,), BG),  # no positives
        torch.full((50,), 5),  # no negatives
        torch.full((50,), -1),  # all ignored
    ]
    for labels in cases:
        n = labels.numel()
        for num_samples in (0, 16, 100):
            pos_idx, neg_idx = libra_subsample_labels(
                labels,
                num_samples,
                0.25,
                BG,
                max_ious=torch.rand(n) * 0.4,
                matched_idxs=torch.zeros(n, dtype=torch.int64),
                **kw
            )
            check_contract(labels, pos_idx, neg_idx, num_samples, 0.25)


@pytest.mark.parametrize("pos_mode,neg_mode", ALL_MODES)
def test_seeded_generator_is_deterministic(pos_mode, neg_mode):
    labels, max_ious, matched = random_image(7, 800)
    kw = dict(max_ious=max_ious, matched_idxs=matched, pos_sampling=pos_mode, neg_sampling=neg_mode)
    a = libra_subsample_labels(labels, 256, 0.25, BG, generator=gen(123), **kw)
    b = libra_subsample_labels(labels, 256, 0.25, BG, generator=gen(123), **kw)
    c = libra_subsample_labels(labels, 256, 0.25, BG, generator=gen(124), **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x.sort().values, y.sort().values) for x, y in zip(a, c))


def test_iou_balanced_mines_harder_negatives_than_random():
    labels, max_ious, matched = random_image(11, 2000)
    neg_ious_random, neg_ious_balanced = [], []
    for seed in range(10):
        _, n1 = libra_subsample_labels(labels, 512, 0.25, BG, generator=gen(seed))
        _, n2 = libra_subsample_labels(
            labels,
            512,
            0.25,
            BG,
            max_ious=max_ious,
            neg_sampling="iou_balanced",
            iou_upper=0.5,
            generator=gen(seed),
        )
        neg_ious_random.append(max_ious[n1].mean())
        neg_ious_balanced.append(max_ious[n2].mean())
    assert sum(neg_ious_balanced) > 1.5 * sum(neg_ious_random)


def test_missing_inputs_and_bad_modes_raise():
    labels = torch.tensor([BG, 1, 1, BG])
    with pytest.raises(ValueError):
        libra_subsample_labels(labels, 4, 0.5, BG, neg_sampling="iou_balanced")
    with pytest.raises(ValueError):
        libra_subsample_labels(labels, 4, 0.5, BG, pos_sampling="instance")
    with pytest.raises(ValueError):
        libra_subsample_labels(labels, 4, 0.5, BG, pos_sampling="hard")
    with pytest.raises(ValueError):
        libra_subsample_labels(labels, 4, 0.5, BG, neg_sampling="ohem")


# --------------------------------------------------------------------------------------------
# config object
# --------------------------------------------------------------------------------------------
def test_config_object():
    cfg = LibraSamplingConfig()
    assert cfg.is_random and not cfg.needs_max_ious and not cfg.needs_matched_idxs
    libra = LibraSamplingConfig.libra()
    assert (
        libra.pos_sampling,
        libra.neg_sampling,
        libra.num_bins,
        libra.floor_thr,
        libra.floor_fraction,
        libra.iou_upper,
    ) == ("instance", "iou_balanced", 3, -1.0, 0.0, None)
    assert libra.needs_max_ious and libra.needs_matched_idxs and not libra.is_random
    assert LibraSamplingConfig.libra(iou_upper=0.5).iou_upper == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        libra.floor_thr = 0.0
    for bad in (
        dict(pos_sampling="x"),
        dict(neg_sampling="x"),
        dict(num_bins=0),
        dict(floor_fraction=2.0),
        dict(iou_upper=0.0),
    ):
        with pytest.raises(ValueError):
            LibraSamplingConfig(**bad)
    labels, max_ious, matched = random_image(3, 600)
    a = libra.subsample(
        labels, 256, 0.25, BG, max_ious=max_ious, matched_idxs=matched, generator=gen(1)
    )
    b = libra_subsample_labels(
        labels,
        256,
        0.25,
        BG,
        max_ious=max_ious,
        matched_idxs=matched,
        generator=gen(1),
        **libra.as_dict()
    )
    assert all(torch.equal(x, y) for x, y in zip(a, b))
