"""``LibraFastRCNNOutputLayers``: Detectron2's box predictor with Libra R-CNN's objective balance.

* box regression: Balanced L1 or LGR-L1 (``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE``), besides
  Detectron2's own types;
* classification (``MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE``): "ce" (Detectron2's softmax CE), "lgr_ce"
  (Logarithmic Gradient Re-weighting, eq. 18-19) or "bcr" (sigmoid CE with Bucketed Class
  Re-weighting of rare negatives, eq. 20-23; the class frequencies come from the training set).

Normalisation is Detectron2's everywhere (sum over sampled RoIs / number of sampled RoIs).
"""

import logging
import math

import torch
from detectron2.config import configurable
from detectron2.layers import cat, nonzero_tuple
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ...data.class_frequency import training_class_image_counts
from ...layers.class_reweighting import bcr_sigmoid_ce_loss, bucketed_class_weights
from ...layers.gradient_reweighting import lgr_cross_entropy
from ..box_regression import (
    DEFAULT_BALANCED_L1,
    LIBRA_DELTA_LOSSES,
    balanced_l1_params,
    delta_regression_loss,
)

__all__ = ["LibraFastRCNNOutputLayers", "CLS_LOSS_TYPES"]

CLS_LOSS_TYPES = ("ce", "lgr_ce", "bcr")
logger = logging.getLogger(__name__)


class LibraFastRCNNOutputLayers(FastRCNNOutputLayers):
    @configurable
    def __init__(
        self,
        input_shape,
        *,
        cls_loss_type: str = "ce",
        lgr_ce: dict = None,
        bcr_class_weights: torch.Tensor = None,
        balanced_l1: dict = None,
        bcr_unavailable_reason: str = "",
        sigmoid_prior_prob: float = 0.01,
        bcr_exclude_background: bool = True,
        **kwargs,
    ):
        """
        Args:
            cls_loss_type: one of :data:`CLS_LOSS_TYPES`.
            lgr_ce: ``dict(alpha, gamma)`` of LGR-CE.
            bcr_class_weights: (K,) per-class weights of BCR (needed by "bcr").
            balanced_l1: ``dict(alpha, gamma, beta, form)`` for the "balanced_l1" / "lgr_l1" box
                losses; missing keys take ``DEFAULT_BALANCED_L1``'s values.
            bcr_unavailable_reason: why the BCR weights could not be computed (training then fails
                with this reason unless a checkpoint provides them).
            sigmoid_prior_prob: initial probability of every class of the sigmoid ("bcr")
                classifier.
            bcr_exclude_background: BCR leaves background RoIs unweighted
                (``MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND``).
            kwargs: Detectron2's ``FastRCNNOutputLayers`` arguments.
        """
        super().__init__(input_shape, **kwargs)
        if cls_loss_type not in CLS_LOSS_TYPES:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE={!r}; expected one of {}".format(
                    cls_loss_type, CLS_LOSS_TYPES
                )
            )
        if cls_loss_type == "bcr" and bcr_class_weights is None:
            raise ValueError("CLS_LOSS_TYPE='bcr' needs per-class weights (bcr_class_weights)")
        self.cls_loss_type = cls_loss_type
        if cls_loss_type == "bcr":
            torch.nn.init.constant_(
                self.cls_score.bias, -math.log((1 - sigmoid_prior_prob) / sigmoid_prior_prob)
            )
        self.bcr_unavailable_reason = bcr_unavailable_reason
        self.bcr_exclude_background = bool(bcr_exclude_background)
        self._bcr_weights_checked = False
        self.lgr_ce = dict(lgr_ce or {"alpha": 0.8, "gamma": 1.0})
        self.balanced_l1 = dict(DEFAULT_BALANCED_L1, **(balanced_l1 or {}))
        if bcr_class_weights is not None:
            self.register_buffer("bcr_class_weights", torch.as_tensor(bcr_class_weights).float())
        else:
            self.bcr_class_weights = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_BOX_HEAD
        ret["cls_loss_type"] = head.CLS_LOSS_TYPE
        ret["lgr_ce"] = {"alpha": head.LGR_CE.ALPHA, "gamma": head.LGR_CE.GAMMA}
        ret["balanced_l1"] = balanced_l1_params(head.BALANCED_L1)
        ret["sigmoid_prior_prob"] = head.BCR.PRIOR_PROB
        ret["bcr_exclude_background"] = head.BCR.EXCLUDE_BACKGROUND
        if head.CLS_LOSS_TYPE == "bcr":
            num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
            try:
                freqs = training_class_image_counts(cfg.DATASETS.TRAIN, num_classes)
            except (OSError, KeyError) as e:
                # No training data here (e.g. evaluating a downloaded checkpoint, whose saved
                # buffer replaces these weights). Training without them fails in the loss.
                logger.warning(
                    "BCR class frequencies unavailable (%s); weights must come from a "
                    "checkpoint",
                    e,
                )
                ret["bcr_class_weights"] = torch.full((num_classes,), float("nan"))
                ret["bcr_unavailable_reason"] = str(e)
                return ret
            ret["bcr_class_weights"] = bucketed_class_weights(
                freqs,
                num_buckets=head.BCR.NUM_BUCKETS,
                turning_point=head.BCR.TURNING_POINT,
                temperature=head.BCR.TEMPERATURE,
            )
        return ret

    def classification_loss(self, scores, gt_classes):
        if self.cls_loss_type == "lgr_ce":
            return lgr_cross_entropy(scores, gt_classes, reduction="mean", **self.lgr_ce)
        if self.cls_loss_type == "bcr":
            if not self._bcr_weights_checked:  # once (after any checkpoint load), not every step
                if torch.isnan(self.bcr_class_weights).any():
                    raise RuntimeError(
                        "Bucketed Class Re-weighting needs the training set's class frequencies, "
                        "which could not be read: {}".format(self.bcr_unavailable_reason)
                    )
                self._bcr_weights_checked = True
            return bcr_sigmoid_ce_loss(
                scores,
                gt_classes,
                self.bcr_class_weights,
                reduction="mean",
                exclude_background_rois=self.bcr_exclude_background,
            )
        raise AssertionError(self.cls_loss_type)

    def losses(self, predictions, proposals):
        losses = super().losses(predictions, proposals)
        if self.cls_loss_type != "ce":
            scores = predictions[0]
            gt_classes = (
                cat([p.gt_classes for p in proposals], dim=0) if len(proposals) else torch.empty(0)
            )
            losses["loss_cls"] = self.classification_loss(
                scores, gt_classes
            ) * self.loss_weight.get("loss_cls", 1.0)
        return losses

    def box_reg_loss(self, proposal_boxes, gt_boxes, pred_deltas, gt_classes):
        if self.box_reg_loss_type not in LIBRA_DELTA_LOSSES:
            return super().box_reg_loss(proposal_boxes, gt_boxes, pred_deltas, gt_classes)
        box_dim = proposal_boxes.shape[1]
        fg_inds = nonzero_tuple((gt_classes >= 0) & (gt_classes < self.num_classes))[0]
        if pred_deltas.shape[1] == box_dim:  # class-agnostic regression
            fg_pred_deltas = pred_deltas[fg_inds]
        else:
            fg_pred_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[
                fg_inds, gt_classes[fg_inds]
            ]
        gt_deltas = self.box2box_transform.get_deltas(proposal_boxes[fg_inds], gt_boxes[fg_inds])
        loss = delta_regression_loss(
            fg_pred_deltas,
            gt_deltas,
            self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
            balanced_l1=self.balanced_l1,
        )
        # Detectron2's normalisation: by the number of sampled RoIs, not of foreground ones.
        return loss / max(gt_classes.numel(), 1.0)

    def predict_probs(self, predictions, proposals):
        if self.cls_loss_type != "bcr":
            return super().predict_probs(predictions, proposals)
        # Sigmoid classifier: per-class probabilities; Detectron2's inference drops the last column.
        scores, _ = predictions
        num_inst_per_image = [len(p) for p in proposals]
        return torch.sigmoid(scores).split(num_inst_per_image, dim=0)
