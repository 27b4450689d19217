"""The diagnosis' measurements as pure functions: class counts and RFS factors, negative IoUs of a
sample and of the pool, the classifier's per-class gradient statistics (against autograd of the
loss) and the pyramid energies."""

import math

import pytest
import torch
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import Backbone
from detectron2.structures import Boxes, Instances
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from libra_d2.analysis import (
    class_imbalance,
    hard_fraction,
    level_energy,
    negative_ious,
    pyramid_energy,
    relative_change,
    sigmoid_gradient_statistics,
    softmax_gradient_statistics,
)
from libra_d2.analysis.objective_imbalance import summarise
from libra_d2.analysis.sample_imbalance import pool_negative_ious
from libra_d2.modeling.backbone import BalancedFeaturePyramid, balance_features


def _records(per_image):
    return [
        {
            "file_name": str(i),
            "annotations": [{"category_id": c, "iscrowd": crowd} for c, crowd in anns],
        }
        for i, anns in enumerate(per_image)
    ]


def test_class_counts_groups_and_repeat_factors():
    # class 0 in 4 images (twice in one), class 1 in 1 image, class 2 only as a crowd box
    records = _records([[(0, 0), (0, 0), (1, 0)], [(0, 0)], [(0, 0), (2, 1)], [(0, 0)], []])
    stats = class_imbalance(records, ["a", "b", "c"], repeat_thresh=0.5, rare_max=1, common_max=3)
    assert [(c["images"], c["instances"], c["group"]) for c in stats["classes"]] == [
        (4, 5, "f"),
        (1, 1, "r"),
        (0, 0, "r"),
    ]
    assert stats["classes_without_images"] == ["c"]
    assert stats["imbalance_ratio"] == 4.0
    # RFS: max(1, sqrt(t / f)) with f the fraction of the 5 images
    assert stats["classes"][0]["rfs_factor"] == 1.0
    assert stats["classes"][1]["rfs_factor"] == pytest.approx(math.sqrt(0.5 / 0.2))
    assert math.isinf(stats["classes"][2]["rfs_factor"])
    # the per-image factors are Detectron2's own
    per_image = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(records, 0.5)
    assert stats["image_repeat"]["max"] == pytest.approx(float(per_image.max()))
    assert stats["groups"]["f"]["instance_share"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="category_id 3"):
        class_imbalance(_records([[(3, 0)]]), ["a", "b", "c"])


def _instances(boxes, **fields):
    inst = Instances((100, 100))
    inst.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    for k, v in fields.items():
        inst.set(k, v)
    return inst


def test_negative_ious_of_a_sample_and_of_the_pool():
    gt_box = [0.0, 0.0, 10.0, 10.0]
    sampled = _instances(
        [[0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60]],
        gt_classes=torch.tensor([1, 3, 3]),
        gt_boxes=Boxes(torch.tensor([gt_box] * 3)),
    )
    ious = negative_ious([sampled], num_classes=3)  # the two background RoIs only
    assert ious.tolist() == pytest.approx([0.5, 0.0])
    assert hard_fraction(ious) == 0.5
    assert math.isnan(hard_fraction(torch.zeros(0)))

    proposals = _instances([[0, 0, 10, 20], [0, 0, 5, 10], [50, 50, 60, 60]])
    proposals.objectness_logits = torch.zeros(3)
    target = Instances((100, 100))
    target.gt_boxes = Boxes(torch.tensor([gt_box]))
    target.gt_classes = torch.tensor([0])
    # IoUs 0.5, 0.5, 0 and the appended ground truth (1.0): those below 0.6 are negatives
    pool = pool_negative_ious([proposals], [target], bg_threshold=0.6)
    assert sorted(pool.tolist()) == pytest.approx([0.0, 0.5, 0.5])


def test_softmax_statistics_are_the_cross_entropy_gradient():
    torch.manual_seed(0)
    logits = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (40,))  # 4 classes + background (4)
    F.cross_entropy(logits, labels, reduction="sum").backward()
    grad, onehot = logits.grad[:, :4], F.one_hot(labels, 5)[:, :4].bool()
    stats = softmax_gradient_statistics(logits, labels)
    assert stats["pos_grad"].tolist() == pytest.approx(
        [grad[onehot[:, j], j].abs().sum().item() for j in range(4)]
    )
    assert stats["neg_grad"].tolist() == pytest.approx(
        [grad[~onehot[:, j], j].abs().sum().item() for j in range(4)]
    )
    probs = F.softmax(logits.detach(), 1)
    assert stats["score_sum"][1].item() == pytest.approx(probs[labels == 1, 1].sum().item())


def test_sigmoid_statistics_are_the_focal_loss_gradient():
    torch.manual_seed(0)
    logits = torch.randn(60, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(-1, 4, (60,))  # -1 ignored, 3 background
    valid = labels >= 0
    onehot = F.one_hot(labels.clamp(min=0), 4)[:, :3].double()
    loss = sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="none")
    loss[valid].sum().backward()
    grad = logits.grad
    stats = sigmoid_gradient_statistics(logits, labels, alpha=0.25, gamma=2.0)
    pos = onehot.bool() & valid[:, None]
    neg = ~onehot.bool() & valid[:, None]
    for j in range(3):
        assert stats["pos_grad"][j].item() == pytest.approx(grad[pos[:, j], j].abs().sum().item())
        assert stats["neg_grad"][j].item() == pytest.approx(grad[neg[:, j], j].abs().sum().item())
    assert stats["positives"].tolist() == [float(pos[:, j].sum()) for j in range(3)]
    ratio = summarise(stats)["ratio"]
    assert ratio[0] == pytest.approx(stats["pos_grad"][0].item() / stats["neg_grad"][0].item())


def test_summarise_marks_classes_without_positives():
    stats = softmax_gradient_statistics(torch.zeros(3, 3), torch.tensor([0, 2, 2]))
    summary = summarise(stats)
    assert summary["ratio"][0] == pytest.approx(2 / 3 / (2 / 3))  # (1 - 1/3) over 2 x 1/3
    assert math.isnan(summary["ratio"][1]) and math.isnan(summary["mean_score"][1])


class _TwoLevels(Backbone):
    """A stand-in FPN: two levels, the second at half resolution."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        p = self.conv(x)
        return {"p4": p, "p5": F.max_pool2d(p, 2)}

    def output_shape(self):
        return {"p4": ShapeSpec(channels=4, stride=16), "p5": ShapeSpec(channels=4, stride=32)}


def test_pyramid_energy_before_and_after_balancing():
    torch.manual_seed(0)
    fpn, images = _TwoLevels(), torch.randn(2, 3, 8, 8)
    outputs, out = pyramid_energy(fpn, images)  # a plain FPN: BFP's integration at P4, no refine
    feats = [fpn(images)["p4"], fpn(images)["p5"]]
    assert out["levels"] == ["p4", "p5"] and not out["with_bfp"]
    assert out["before"] == pytest.approx(level_energy(feats))
    assert out["after"] == pytest.approx(level_energy(balance_features(feats, 0)))
    assert all(torch.equal(outputs[k], fpn(images)[k]) for k in ("p4", "p5"))  # the pass's own
    assert level_energy([torch.full((1, 2, 2, 2), 3.0)]) == [9.0]


def test_pyramid_energy_of_a_balanced_feature_pyramid():
    torch.manual_seed(0)
    bfp = BalancedFeaturePyramid(_TwoLevels(), refine_level=0, refine_type="conv")
    images = torch.randn(2, 3, 8, 8)
    outputs, out = pyramid_energy(bfp, images)
    assert out["with_bfp"] and out["refine"] == "conv"
    with torch.no_grad():
        before = [bfp.fpn(images)[k] for k in ("p4", "p5")]
        after = [bfp(images)[k] for k in ("p4", "p5")]
    assert out["before"] == pytest.approx(level_energy(before))
    assert out["after"] == pytest.approx(level_energy(after))
    assert all(torch.equal(outputs[k], a) for k, a in zip(("p4", "p5"), after))
    assert out["after"] != pytest.approx(level_energy(balance_features(before, 0)))  # refined
    # the refine's change of the integrated feature, measured by a hook on the refine module
    with torch.no_grad():
        integrated = (before[0] + F.interpolate(before[1], size=before[0].shape[-2:])) / 2
        expected = relative_change(integrated, bfp.refine(integrated))
    assert out["refine_change"] == pytest.approx(expected) and expected > 0
    assert pyramid_energy(_TwoLevels(), images)[1]["refine_change"] is None
    assert relative_change(torch.ones(3), torch.ones(3)) == 0.0
