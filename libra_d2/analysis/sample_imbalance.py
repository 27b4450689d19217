"""Sample imbalance: the IoU, with their best-matching ground truth, of the negative RoIs that the
configured sampler picks, against all negatives (what random sampling picks in expectation).

Libra R-CNN's Fig. 2: most negatives are easy (IoU near 0), random sampling follows that
distribution, and IoU-balanced sampling picks more hard negatives (IoU closer to the threshold).
"""

from typing import Sequence

import torch
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.structures import Instances, pairwise_iou
from detectron2.structures.boxes import matched_pairwise_iou

__all__ = ["hard_fraction", "negative_ious", "pool_negative_ious"]

#: a negative is "hard" from this IoU on (the paper's Fig. 2 splits its histogram there)
HARD_IOU = 0.05


def negative_ious(sampled: Sequence[Instances], num_classes: int) -> torch.Tensor:
    """IoUs of the sampled background RoIs (``gt_classes == num_classes``) with their matched ground
    truth, from ``label_and_sample_proposals``'s output (which sets ``gt_boxes`` on every sampled
    RoI of an image with ground truth)."""
    out = []
    for inst in sampled:
        if not inst.has("gt_boxes") or len(inst) == 0:
            continue
        neg = inst.gt_classes == num_classes
        if neg.any():
            out.append(matched_pairwise_iou(inst.proposal_boxes[neg], inst.gt_boxes[neg]))
    return torch.cat(out) if out else torch.zeros(0)


def pool_negative_ious(
    proposals: Sequence[Instances], targets: Sequence[Instances], bg_threshold: float
) -> torch.Tensor:
    """Max IoU of every proposal (ground truth appended, as the RoI heads do) below
    ``bg_threshold``: the negatives a random sampler draws from uniformly."""
    out = []
    for props, gt in zip(add_ground_truth_to_proposals(list(targets), list(proposals)), targets):
        if len(gt) == 0:
            continue
        best = pairwise_iou(gt.gt_boxes, props.proposal_boxes).max(dim=0).values
        out.append(best[best < bg_threshold])
    return torch.cat(out) if out else torch.zeros(0)


def hard_fraction(ious: torch.Tensor, threshold: float = HARD_IOU) -> float:
    """Fraction of ``ious`` at or above ``threshold`` (nan for none)."""
    if ious.numel() == 0:
        return float("nan")
    return float((ious >= threshold).float().mean())
