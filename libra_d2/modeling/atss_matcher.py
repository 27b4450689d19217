"""ATSS: Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as a registered anchor
matcher.

The improved one-stage baseline of Equalized Focal Loss (paper sec. 4.1) assigns anchors with ATSS
(top-k 18). Registered in libra_d2's ``MATCHER_REGISTRY`` as "ATSSMatcher"
(``build_matcher("ATSSMatcher", topk=18)``).

Why its API differs from the IoU matcher's: a max-IoU matcher only needs the (M x R) IoU matrix.
ATSS also needs the anchor *centers*, the *level* of every anchor (the k closest candidates are
chosen per pyramid level) and the GT boxes themselves (the "center inside GT" test). So it is called
with the per-level anchor boxes and the GT boxes, and returns the same ``(matches, match_labels)``
pair as Detectron2's ``Matcher``, so the caller's labelling code is unchanged:

    matcher = ATSSMatcher(topk=18)
    matches, match_labels = matcher(anchors_per_level, gt_boxes)
    # anchors_per_level: list over levels of (R_l, 4) XYXY tensors (or Boxes), in the order the
    #                    caller concatenates them (Detectron2: Boxes.cat(anchors)), R = sum R_l
    # gt_boxes:          (M, 4) XYXY tensor (or Boxes)
    # matches:           (R,) int64 index of the assigned GT (0 where nothing is assigned)
    # match_labels:      (R,) int8, 1 = positive, 0 = negative (ATSS ignores nothing)

:meth:`ATSSMatcher.assign` returns the same plus the per-GT IoU threshold and the candidate indices
(:class:`ATSSAssignment`), for analysis and tests.

The rule, for every GT ``g`` (M GTs, L levels):

1. on each level, the ``min(k, R_l)`` anchors whose centers are closest (L2) to the center of ``g``
   are candidates (``k * L`` candidates at most);
2. the IoU threshold of ``g`` is ``t_g = mean + std`` of the candidates' IoUs with ``g`` (``std`` is
   the sample standard deviation (n - 1), as the reference implementations; 0 for one candidate);
3. a candidate is positive for ``g`` when its IoU with ``g`` is ``>= t_g`` and its center lies
   inside ``g`` (more than ``center_eps`` = 0.01 px from every edge, as the reference);
4. an anchor positive for several GTs goes to the one with the highest IoU; all others are negative.
"""

from typing import List, NamedTuple, Sequence, Tuple, Union

import torch
from detectron2.structures import Boxes, pairwise_iou
from torch import Tensor

from .matcher import MATCHER_REGISTRY

__all__ = ["ATSSMatcher", "ATSSAssignment"]


class ATSSAssignment(NamedTuple):
    """Output of :meth:`ATSSMatcher.assign`."""

    matches: Tensor  # (R,) int64: assigned GT index (0 where negative)
    match_labels: Tensor  # (R,) int8: 1 positive, 0 negative
    iou_thresholds: Tensor  # (M,) float: mean + std of each GT's candidate IoUs
    candidate_idxs: Tensor  # (K, M) int64: the candidates of every GT (K = sum_l min(k, R_l))


def _as_tensor(boxes: Union[Tensor, Boxes]) -> Tensor:
    return boxes.tensor if isinstance(boxes, Boxes) else boxes


@MATCHER_REGISTRY.register()
class ATSSMatcher:
    """Adaptive Training Sample Selection; see the module docstring for the call API and the rule.

    Args:
        topk: ``k``, candidates per level and GT (9 in ATSS, 18 in EFL's improved baseline).
        center_eps: an anchor center must lie more than this (pixels) inside the GT box.
    """

    def __init__(self, topk: int = 18, center_eps: float = 0.01):
        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.center_eps = float(center_eps)

    def __repr__(self) -> str:
        return f"ATSSMatcher(topk={self.topk}, center_eps={self.center_eps})"

    def __call__(
        self, anchors_per_level: Sequence[Union[Tensor, Boxes]], gt_boxes: Union[Tensor, Boxes]
    ) -> Tuple[Tensor, Tensor]:
        result = self.assign(anchors_per_level, gt_boxes)
        return result.matches, result.match_labels

    @torch.no_grad()
    def assign(
        self, anchors_per_level: Sequence[Union[Tensor, Boxes]], gt_boxes: Union[Tensor, Boxes]
    ) -> ATSSAssignment:
        levels: List[Tensor] = [_as_tensor(a) for a in anchors_per_level]
        if len(levels) == 0:
            raise ValueError("ATSSMatcher needs at least one level of anchors")
        anchors = torch.cat(levels, dim=0)
        gt = _as_tensor(gt_boxes).to(device=anchors.device, dtype=anchors.dtype)
        num_anchors, num_gt = anchors.shape[0], gt.shape[0]
        device = anchors.device
        if num_gt == 0 or num_anchors == 0:
            return ATSSAssignment(
                torch.zeros(num_anchors, dtype=torch.int64, device=device),
                torch.zeros(num_anchors, dtype=torch.int8, device=device),
                anchors.new_zeros((num_gt,)),
                torch.zeros((0, num_gt), dtype=torch.int64, device=device),
            )

        ious = pairwise_iou(Boxes(anchors), Boxes(gt))  # (R, M), Detectron2's IoU
        anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2  # (R, 2)
        gt_centers = (gt[:, :2] + gt[:, 2:]) / 2  # (M, 2)
        distances = torch.cdist(anchor_centers, gt_centers)  # (R, M)

        # 1. per level, the k anchors closest to every GT center
        candidates = []
        start = 0
        for level in levels:
            n = level.shape[0]
            k = min(self.topk, n)
            if k > 0:
                _, idx = distances[start : start + n].topk(k, dim=0, largest=False)  # (k, M)
                candidates.append(idx + start)
            start += n
        candidate_idxs = torch.cat(candidates, dim=0)  # (K, M)
        gt_idx = torch.arange(num_gt, device=device).expand_as(candidate_idxs)

        # 2. adaptive IoU threshold per GT
        candidate_ious = ious[candidate_idxs, gt_idx]  # (K, M)
        mean = candidate_ious.mean(dim=0)
        std = candidate_ious.std(dim=0) if candidate_ious.shape[0] > 1 else torch.zeros_like(mean)
        thresholds = mean + std

        # 3. IoU >= threshold and center inside the GT
        cx = anchor_centers[candidate_idxs, 0]
        cy = anchor_centers[candidate_idxs, 1]
        inside = (
            torch.stack([cx - gt[:, 0], cy - gt[:, 1], gt[:, 2] - cx, gt[:, 3] - cy], dim=0)
            .min(dim=0)
            .values
            > self.center_eps
        )
        positive = (candidate_ious >= thresholds[None, :]) & inside  # (K, M)

        # 4. several GTs: the highest IoU wins
        pos_ious = torch.full_like(ious, -1.0)
        pos_ious[candidate_idxs[positive], gt_idx[positive]] = candidate_ious[positive]
        best, matches = pos_ious.max(dim=1)
        labels = (best >= 0).to(torch.int8)
        matches = torch.where(labels > 0, matches, torch.zeros_like(matches))
        return ATSSAssignment(matches, labels, thresholds, candidate_idxs)
