"""LibraRetinaNet: Detectron2's RetinaNet with Libra R-CNN's Balanced L1 box loss.

Libra RetinaNet (Libra R-CNN journal, Sec. 4.1.3) "only integrates balanced feature pyramid and
balanced L1 loss", RetinaNet having no sampling step. The BFP is a backbone
(``build_retinanet_resnet_bfp_backbone``); this class only routes the box loss through
:func:`libra_d2.modeling.box_regression.dense_box_regression_loss`, so
``MODEL.RETINANET.BBOX_REG_LOSS_TYPE`` also accepts "balanced_l1" and "lgr_l1"
(``MODEL.RETINANET.BALANCED_L1.*``, beta 0.11 by default as in the reference). Everything else is
Detectron2's RetinaNet; with a Detectron2 loss type the losses are exactly RetinaNet's.

Registered in Detectron2's ``META_ARCH_REGISTRY`` as "LibraRetinaNet".
"""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from fvcore.nn import sigmoid_focal_loss_jit

from ...utils.events import put_scalar_deferred
from ..box_regression import DEFAULT_BALANCED_L1, balanced_l1_params, dense_box_regression_loss

__all__ = ["LibraRetinaNet"]


@META_ARCH_REGISTRY.register()
class LibraRetinaNet(RetinaNet):
    """Detectron2's :class:`RetinaNet` whose box regression loss may be Balanced L1 / LGR-L1."""

    @configurable
    def __init__(self, *, balanced_l1: Optional[Dict[str, float]] = None, **kwargs):
        """
        Args:
            balanced_l1: ``{"alpha", "gamma", "beta"}`` of the "balanced_l1" / "lgr_l1" box
                losses; None: alpha 0.5, gamma 1.5, beta 0.11 (the reference Libra RetinaNet).
            kwargs: :class:`RetinaNet`'s arguments.
        """
        super().__init__(**kwargs)
        self.balanced_l1 = {**DEFAULT_BALANCED_L1, "beta": 0.11, **(balanced_l1 or {})}

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["balanced_l1"] = balanced_l1_params(cfg.MODEL.RETINANET.get("BALANCED_L1"))
        return ret

    def _update_loss_normalizer(self, num_pos_anchors: torch.Tensor) -> torch.Tensor:
        """RetinaNet's EMA of the number of positive anchors (the loss normaliser), updated with
        Detectron2's ``DenseDetector._ema_update`` (same start and momentum as ``RetinaNet``).

        ``num_pos_anchors`` stays a tensor (no host synchronisation). The EMA is kept in float64,
        as Detectron2's Python-float EMA is, and returned in float32, the precision in which a
        float32 loss is divided by a Python float."""
        value = num_pos_anchors.clamp(min=1).double()
        return self._ema_update("loss_normalizer", value, 100).float()

    def box_regression_loss(self, anchors, pred_anchor_deltas, gt_boxes, pos_mask):
        """The summed box loss over the positive anchors (``BBOX_REG_LOSS_TYPE``, Balanced L1
        included), not normalised."""
        return dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
            balanced_l1=self.balanced_l1,
        )

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """Detectron2's ``RetinaNet.losses`` (same arguments, focal loss, normaliser and logging)
        with the box loss of :func:`dense_box_regression_loss`.

        Returns:
            dict with "loss_cls" and "loss_box_reg".
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)

        valid_mask = gt_labels >= 0
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum()
        put_scalar_deferred("num_pos_anchors", num_pos_anchors / num_images)
        normalizer = self._update_loss_normalizer(num_pos_anchors)

        # no loss for the last (background) column
        gt_labels_target = F.one_hot(gt_labels[valid_mask], num_classes=self.num_classes + 1)[
            :, :-1
        ]
        loss_cls = sigmoid_focal_loss_jit(
            cat(pred_logits, dim=1)[valid_mask],
            gt_labels_target.to(pred_logits[0].dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        loss_box_reg = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask)
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box_reg / normalizer}
