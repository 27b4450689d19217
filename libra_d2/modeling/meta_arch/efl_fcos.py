"""EFLFCOS: Detectron2's FCOS (with center sampling, i.e. FCOS*) trained with Equalized Focal Loss,
buildable from YAML configs.

EFL replaces FCOS's sigmoid focal loss through the piece every EFL detector shares
(:mod:`libra_d2.modeling.dense_efl`): the same loss module and gradient statistics as
``EFLRetinaNet`` (``efl.statistics.pos_grad`` / ``neg_grad`` in the ``state_dict``, so checkpoints
keep them; the sums all-reduced over the processes), here over FCOS's anchor points (one per
location and level, ``(N, sum Hi*Wi, C)``), the same per-group logging (``efl/grad_ratio/*``, ...)
and the paper's normaliser (``MODEL.EFL.LOSS_NORMALIZER "num_pos"``: the global batch's positive
points / world size; "ema": Detectron2's FCOS EMA, from 300). Everything else is Detectron2's FCOS:
the head with its centerness branch, the anchor-point matching with center sampling
(``MODEL.FCOS.CENTER_SAMPLING_RADIUS``), the GIoU box loss, the centerness loss and inference
(score = sqrt(class probability x centerness)).

With ``MODEL.EFL.SCALE 0`` and ``LOSS_NORMALIZER "ema"`` the losses are exactly Detectron2's FCOS
(focal loss with ``MODEL.EFL.FOCAL_ALPHA`` and ``GAMMA_B``); tested.

Registered in Detectron2's ``META_ARCH_REGISTRY`` as "EFLFCOS". Config: ``MODEL.FCOS``
(:func:`libra_d2.config.add_fcos_config`), ``MODEL.EFL`` (its loss keys; the RetinaNet-only
``ANCHOR_MATCHER`` and ``IOU_BRANCH`` are refused), backbone ``build_fcos_resnet_fpn_backbone``.
"""

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import build_backbone
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from detectron2.structures import Boxes

from ...data.class_frequency import training_frequency_groups
from ...layers.equalized_focal_loss import EFLClassificationLoss
from ...utils.compat import retinanet_head_norm
from ...utils.events import put_scalar_deferred
from ..box_regression import dense_box_regression_loss
from ..dense_efl import (
    check_frequency_groups,
    check_loss_normalizer,
    dense_efl_loss,
    efl_loss_kwargs,
    log_efl_statistics,
    loss_normalizer,
)

__all__ = ["EFLFCOS"]


@META_ARCH_REGISTRY.register()
class EFLFCOS(FCOS):
    """Detectron2's FCOS with Equalized Focal Loss (module doc)."""

    @configurable
    def __init__(
        self,
        *,
        efl: Optional[Dict] = None,
        loss_normalizer: str = "num_pos",
        frequency_groups: Optional[Sequence[str]] = None,
        log_period: int = 20,
        **kwargs,
    ):
        """
        Args:
            efl: keyword arguments of :class:`EFLClassificationLoss`; None: the paper's.
            loss_normalizer: "num_pos" or "ema" (module doc).
            frequency_groups: one 'r' / 'c' / 'f' per class for the logged statistics, or None.
            log_period: log the statistics every that many iterations (0: never).
            kwargs: Detectron2's :class:`FCOS` arguments.
        """
        super().__init__(**kwargs)
        self.efl = EFLClassificationLoss(self.num_classes, **(efl or {}))
        self.loss_normalizer_type = check_loss_normalizer(loss_normalizer)
        self.frequency_groups = check_frequency_groups(frequency_groups, self.num_classes)
        self.log_period = int(log_period)

    @classmethod
    def from_config(cls, cfg):
        node, efl = cfg.MODEL.FCOS, cfg.MODEL.get("EFL")
        efl_kwargs = efl_loss_kwargs(efl)
        if efl.IOU_BRANCH or str(efl.ANCHOR_MATCHER).lower() != "iou":
            raise ValueError(
                "MODEL.EFL.IOU_BRANCH / ANCHOR_MATCHER are EFLRetinaNet's improved baseline; FCOS "
                "has its own centerness branch and anchor-point matching (MODEL.FCOS)"
            )
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in node.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.FCOS.IN_FEATURES {missing} are not outputs of the backbone "
                f"({sorted(shapes)}); FCOS uses build_fcos_resnet_fpn_backbone (P3-P7)"
            )
        feature_shapes = [shapes[f] for f in node.IN_FEATURES]
        head = FCOSHead(
            input_shape=feature_shapes,
            conv_dims=[feature_shapes[0].channels] * node.NUM_CONVS,
            num_classes=node.NUM_CLASSES,
            norm=retinanet_head_norm(node.NORM),
            prior_prob=node.PRIOR_PROB,
        )
        return {
            "backbone": backbone,
            "head": head,
            "head_in_features": list(node.IN_FEATURES),
            "num_classes": node.NUM_CLASSES,
            "center_sampling_radius": node.CENTER_SAMPLING_RADIUS,
            "focal_loss_alpha": efl.FOCAL_ALPHA,
            "focal_loss_gamma": efl.GAMMA_B,
            "test_score_thresh": node.SCORE_THRESH_TEST,
            "test_topk_candidates": node.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": node.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "efl": efl_kwargs,
            "loss_normalizer": efl.LOSS_NORMALIZER,
            "frequency_groups": training_frequency_groups(cfg.DATASETS.TRAIN, node.NUM_CLASSES),
            "log_period": efl.LOG_PERIOD,
        }

    def _update_loss_normalizer(self, num_pos: torch.Tensor) -> torch.Tensor:
        """Detectron2's FCOS normaliser: an EMA (from 300, Detectron2's ``_ema_update``) of the
        positive points, kept a tensor (no host synchronisation)."""
        return self._ema_update("loss_normalizer", num_pos.clamp(min=1).double(), 300).float()

    def losses(
        self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
    ):
        """Detectron2's ``FCOS.losses`` (same arguments and loss names) with EFL as the
        classification loss."""
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos = pos_mask.sum()
        put_scalar_deferred("num_pos_anchors", num_pos / num_images)
        normalizer = loss_normalizer(
            self.loss_normalizer_type, num_pos, self._update_loss_normalizer
        )

        loss_cls = dense_efl_loss(self.efl, pred_logits, gt_labels, normalizer)
        # matched boxes: Boxes on Detectron2 0.6, tensors on main (its compute_ctrness_targets
        # takes them as label_anchors returns them)
        boxes = [b.tensor if isinstance(b, Boxes) else b for b in gt_boxes]
        loss_box_reg = dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            boxes,
            pos_mask,
            box_reg_loss_type="giou",
        )
        ctrness_targets = self.compute_ctrness_targets(anchors, gt_boxes)  # (N, R)
        pred_centerness = torch.cat(pred_centerness, dim=1).squeeze(dim=2)  # (N, R)
        ctrness_loss = F.binary_cross_entropy_with_logits(
            pred_centerness[pos_mask], ctrness_targets[pos_mask], reduction="sum"
        )
        if self.training:
            self.log_statistics()
        return {
            "loss_fcos_cls": loss_cls,
            "loss_fcos_loc": loss_box_reg / normalizer,
            "loss_fcos_ctr": ctrness_loss / normalizer,
        }

    def log_statistics(self) -> Dict[str, float]:
        """``g_j``, ``gamma_j`` and ``w_j`` per frequency group (:func:`log_efl_statistics`)."""
        return log_efl_statistics(self.efl, self.frequency_groups, self.log_period)
