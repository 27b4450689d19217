"""Tests of libra_d2.modeling.matcher (MaxIoUMatcher, MATCHER_REGISTRY, build_matcher)."""

import pytest
import torch
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou

from libra_d2.modeling.matcher import (
    MATCHER_REGISTRY,
    MatchResult,
    MaxIoUMatcher,
    build_matcher,
)
from libra_d2.modeling.sampling import libra_subsample_labels

SETTINGS = [
    dict(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),  # ROI heads
    dict(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),  # RPN
]


def random_iou(num_gt, num_pred, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_gt + num_pred, 2, generator=g) * 100
    wh = torch.rand(num_gt + num_pred, 2, generator=g) * 40 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    return pairwise_iou(Boxes(boxes[:num_gt]), Boxes(boxes[num_gt:]))


@pytest.mark.parametrize("kwargs", SETTINGS)
def test_max_ious_and_detectron2_contract(kwargs):
    ours, d2 = MaxIoUMatcher(**kwargs), Matcher(**kwargs)
    for seed in range(10):
        iou = random_iou(1 + seed, 300, seed)
        res = ours.match_with_quality(iou)
        assert isinstance(res, MatchResult)
        assert torch.equal(res.max_ious, iou.max(dim=0).values)
        exp_matches, exp_labels = d2(iou)
        assert torch.equal(res.matches, exp_matches) and torch.equal(res.match_labels, exp_labels)
        # __call__ is Detectron2's: a pair, identical values
        call = ours(iou)
        assert isinstance(call, tuple) and len(call) == 2
        assert torch.equal(call[0], exp_matches) and torch.equal(call[1], exp_labels)
        assert res.max_ious.dtype == iou.dtype and res.max_ious.shape == (300,)


def test_low_quality_matches_keep_their_raw_iou():
    iou = torch.tensor([[0.2, 0.1, 0.0], [0.0, 0.05, 0.9]])
    res = MaxIoUMatcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True).match_with_quality(
        iou
    )
    assert res.match_labels.tolist() == [1, 0, 1]
    assert torch.allclose(res.max_ious, torch.tensor([0.2, 0.1, 0.9]))


@pytest.mark.parametrize("kwargs", SETTINGS)
def test_no_ground_truth(kwargs):
    res = MaxIoUMatcher(**kwargs).match_with_quality(torch.zeros(0, 7))
    assert res.matches.tolist() == [0] * 7
    assert (
        res.match_labels.tolist() == [kwargs["labels"][0]] * 7
        and res.match_labels.dtype == torch.int8
    )
    assert res.max_ious.tolist() == [0.0] * 7
    res = MaxIoUMatcher(**kwargs).match_with_quality(torch.zeros(3, 0))
    assert res.matches.numel() == res.match_labels.numel() == res.max_ious.numel() == 0
    res = MaxIoUMatcher(**kwargs).match_with_quality(torch.zeros(0, 0))
    assert res.max_ious.numel() == 0


def test_registry_and_builder():
    assert "MaxIoUMatcher" in MATCHER_REGISTRY
    m = build_matcher(
        "MaxIoUMatcher", thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True
    )
    assert isinstance(m, MaxIoUMatcher) and isinstance(m, Matcher)
    assert m.thresholds[1:-1] == [0.4, 0.5] and m.allow_low_quality_matches
    with pytest.raises(KeyError) as err:
        build_matcher("NoSuchMatcher", topk=9)
    assert "NoSuchMatcher" in str(err.value) and "MaxIoUMatcher" in str(err.value)


def test_registry_accepts_other_matchers():
    class _TestOnlyMatcher:
        def __init__(self, topk=9):
            self.topk = topk

    MATCHER_REGISTRY.register(_TestOnlyMatcher)
    try:
        assert build_matcher("_TestOnlyMatcher", topk=3).topk == 3
    finally:
        MATCHER_REGISTRY._obj_map.pop("_TestOnlyMatcher")
    assert "_TestOnlyMatcher" not in MATCHER_REGISTRY


def test_matcher_feeds_the_iou_balanced_sampler():
    iou = random_iou(5, 1000, 3)
    res = MaxIoUMatcher([0.5], [0, 1]).match_with_quality(iou)
    gt_classes = torch.tensor([0, 1, 2, 3, 4])
    labels = gt_classes[res.matches]
    labels[res.match_labels == 0] = 5
    pos, neg = libra_subsample_labels(
        labels,
        256,
        0.25,
        5,
        max_ious=res.max_ious,
        matched_idxs=res.matches,
        pos_sampling="instance",
        neg_sampling="iou_balanced",
        generator=torch.Generator().manual_seed(0),
    )
    assert (res.max_ious[pos] >= 0.5).all() and (res.max_ious[neg] < 0.5).all()
    assert neg.numel() == min(int((labels == 5).sum()), 256 - pos.numel())
