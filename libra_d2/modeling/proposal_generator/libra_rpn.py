"""LibraRPN: Detectron2's RPN with Libra R-CNN's sample- and objective-level balance.

Registered in Detectron2's ``PROPOSAL_GENERATOR_REGISTRY`` as "LibraRPN"
(``MODEL.PROPOSAL_GENERATOR.NAME: "LibraRPN"``). Two things differ from :class:`RPN`:

* anchor sampling uses :func:`libra_d2.modeling.sampling.libra_subsample_labels`
  (``MODEL.RPN.SAMPLER.*``: instance-balanced positives, IoU-balanced negatives, ...); the
  IoU-balanced negatives bin on every anchor's max IoU, taken from the match quality matrix the
  matcher already gets (:meth:`MaxIoUMatcher.match_with_quality`; no second IoU computation);
* the box loss goes through :func:`libra_d2.modeling.box_regression.dense_box_regression_loss`,
  so ``MODEL.RPN.BBOX_REG_LOSS_TYPE`` also accepts "balanced_l1" and "lgr_l1"
  (``MODEL.RPN.BALANCED_L1.*``).

With ``SAMPLER.POS = SAMPLER.NEG = "random"`` and a Detectron2 loss type, LibraRPN computes exactly
Detectron2's RPN losses (same random stream, same values).

Note on IoU-balanced negatives in the RPN: RPN negatives have IoU < 0.3 (``IOU_THRESHOLDS[0]``).
With the reference bin range (``iou_upper`` None: ``[0, h)``, h = the image's best anchor IoU) and
K = 3, only the bins below 0.3 hold negatives: for h >= 0.9 all negatives share the lowest bin and
the sampling is plain random; for smaller h the lowest one or two bins share them. An
``IOU_UPPER`` equal to the negative threshold (0.3) spreads all K bins over the negatives' IoUs
(on a 128 px image with small objects, mean max IoU of the sampled negatives: random 0.018,
reference range 0.083, IOU_UPPER 0.3: 0.122).
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.proposal_generator.build import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.memory import retry_if_cuda_oom

from ...utils.events import put_scalar_deferred
from ..box_regression import DEFAULT_BALANCED_L1, balanced_l1_params, dense_box_regression_loss
from ..matcher import MatchResult, MaxIoUMatcher
from ..sampling import LibraSamplingConfig, sampling_config_from_cfg

__all__ = ["LibraRPN"]


def _match_with_quality(matcher, match_quality_matrix: torch.Tensor) -> MatchResult:
    """``MaxIoUMatcher.match_with_quality`` for any Detectron2 ``Matcher`` (a plain one passed to
    the constructor included): its own ``__call__`` plus the max IoU of every anchor."""
    return MaxIoUMatcher.match_with_quality(matcher, match_quality_matrix)


@PROPOSAL_GENERATOR_REGISTRY.register()
class LibraRPN(RPN):
    """Detectron2's :class:`RPN` with Libra R-CNN's balanced anchor sampling and box losses."""

    @configurable
    def __init__(
        self,
        *,
        sampling: Optional[LibraSamplingConfig] = None,
        balanced_l1: Optional[Dict[str, float]] = None,
        **kwargs,
    ):
        """
        Args:
            sampling: anchor sampling options; None: Detectron2's random sampling.
            balanced_l1: ``{"alpha", "gamma", "beta"}`` of the "balanced_l1" / "lgr_l1" box
                losses; None: the paper's (0.5, 1.5, 1.0).
            kwargs: :class:`RPN`'s arguments.
        """
        super().__init__(**kwargs)
        self.sampling = sampling if sampling is not None else LibraSamplingConfig()
        self.balanced_l1 = dict(DEFAULT_BALANCED_L1, **(balanced_l1 or {}))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        rpn = cfg.MODEL.RPN
        # a Matcher that can also report max IoUs (its __call__ is Detectron2's)
        ret["anchor_matcher"] = MaxIoUMatcher(
            rpn.IOU_THRESHOLDS, rpn.IOU_LABELS, allow_low_quality_matches=True
        )
        ret["sampling"] = sampling_config_from_cfg(rpn.get("SAMPLER"))
        ret["balanced_l1"] = balanced_l1_params(rpn.get("BALANCED_L1"))
        return ret

    def _subsample_labels(self, label, matched_idxs=None, max_ious=None):
        """Detectron2's ``RPN._subsample_labels`` with :attr:`sampling`: keep the sampled anchors'
        labels (1 / 0), set the others to -1 (in place).

        Args:
            label: (R,) labels in {-1, 0, 1}.
            matched_idxs: (R,) matched GT of every anchor (instance / class-balanced positives).
            max_ious: (R,) max IoU of every anchor (IoU-balanced negatives).
        """
        pos_idx, neg_idx = self.sampling.subsample(
            label,
            self.batch_size_per_image,
            self.positive_fraction,
            0,
            max_ious=max_ious,
            matched_idxs=matched_idxs,
        )
        label.fill_(-1)
        label.scatter_(0, pos_idx, 1)
        label.scatter_(0, neg_idx, 0)
        return label

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Detectron2's ``RPN.label_and_sample_anchors`` (same outputs) with balanced sampling."""
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes = [], []
        for inst in gt_instances:
            labels_i, boxes_i = self._label_and_sample_image(
                anchors, inst.gt_boxes, inst.image_size
            )
            gt_labels.append(labels_i)  # (R,)
            matched_gt_boxes.append(boxes_i)  # (R, 4)
        return gt_labels, matched_gt_boxes

    def _label_and_sample_image(self, anchors: Boxes, gt_boxes: Boxes, image_size):
        """Match, label and sample the anchors of one image: (labels (R,), matched GT boxes (R,
        4))."""
        match_quality_matrix = retry_if_cuda_oom(pairwise_iou)(gt_boxes, anchors)
        if self.sampling.needs_max_ious:
            matched_idxs, labels, max_ious = retry_if_cuda_oom(_match_with_quality)(
                self.anchor_matcher, match_quality_matrix
            )
            max_ious = max_ious.to(device=gt_boxes.device)
        else:
            matched_idxs, labels = retry_if_cuda_oom(self.anchor_matcher)(match_quality_matrix)
            max_ious = None
        # matching may fall back to the CPU; its results are small
        labels = labels.to(device=gt_boxes.device)
        del match_quality_matrix

        if self.anchor_boundary_thresh >= 0:
            # legacy: ignore anchors that go out of the image (off by default in Detectron2)
            labels[~anchors.inside_box(image_size, self.anchor_boundary_thresh)] = -1

        labels = self._subsample_labels(
            labels,
            matched_idxs=(
                matched_idxs.to(device=gt_boxes.device)
                if self.sampling.needs_matched_idxs
                else None
            ),
            max_ious=max_ious,
        )
        if len(gt_boxes) == 0:  # all background: the boxes are never used
            return labels, torch.zeros_like(anchors.tensor)
        return labels, gt_boxes[matched_idxs].tensor

    @torch.jit.unused
    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        gt_labels: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        gt_boxes: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Detectron2's ``RPN.losses`` (same arguments, names, normalisation and logging) with the
        box loss of :func:`dense_box_regression_loss`."""
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, sum(Hi*Wi*Ai))

        pos_mask = gt_labels == 1
        put_scalar_deferred("rpn/num_pos_anchors", pos_mask.sum() / num_images)
        put_scalar_deferred("rpn/num_neg_anchors", (gt_labels == 0).sum() / num_images)

        localization_loss = dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
            balanced_l1=self.balanced_l1,
        )
        valid_mask = gt_labels >= 0
        objectness_loss = F.binary_cross_entropy_with_logits(
            cat(pred_objectness_logits, dim=1)[valid_mask],
            gt_labels[valid_mask].to(torch.float32),
            reduction="sum",
        )
        normalizer = self.batch_size_per_image * num_images
        losses = {
            "loss_rpn_cls": objectness_loss / normalizer,
            "loss_rpn_loc": localization_loss / normalizer,
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}
