"""EFLRetinaNet: RetinaNet trained with Equalized Focal Loss, plus EFL's improved one-stage
baseline.

Equalized Focal Loss (Li et al., CVPR 2022, eq. 2-4) replaces the focal loss of the classifier:
every class ``j`` gets its own focusing factor ``gamma_j = gamma_b + s (1 - g_j)`` and weighting
factor ``gamma_j / gamma_b``, where ``g_j`` is the accumulated ratio of positive to negative
gradient magnitudes of class ``j``
(:class:`~libra_d2.layers.equalized_focal_loss.EqualizedFocalLoss`, which computes the loss and the
true ``|dL/dlogit|`` statistics in one fused pass). The loss module is the attribute ``efl``, so its
fp32 statistics buffers (``efl.statistics.pos_grad`` / ``neg_grad``) are in the model's
``state_dict``: ``DetectionCheckpointer`` saves them and ``--resume`` restores them.

Registered in Detectron2's ``META_ARCH_REGISTRY`` as "EFLRetinaNet"; a subclass of
:class:`LibraRetinaNet`, so the box loss is any of ``MODEL.RETINANET.BBOX_REG_LOSS_TYPE`` (smooth
L1, GIoU, ... and Balanced L1 / LGR-L1) and a BFP backbone combines as in Libra RetinaNet.

Config (``MODEL.EFL``, see :func:`libra_d2.config.add_efl_config`):

* ``GAMMA_B`` (2.0), ``SCALE`` (``s``, 8.0), ``FOCAL_ALPHA`` (0.25): the loss. With ``SCALE 0`` EFL
  is sigmoid focal loss.
* ``USE_FOCUSING`` / ``USE_WEIGHTING`` (True): the paper's Table 3 ablation. Focusing off:
  ``gamma_j = gamma_b`` for every class (the weights still follow ``g_j``); weighting off: weight 1.
* ``LOSS_NORMALIZER``: "num_pos" (default; the paper's and the reference's normaliser: the number of
  positive anchors of the whole batch, SUM-all-reduced over the processes and divided by the world
  size, at least 1) or "ema" (Detectron2's RetinaNet normaliser: an EMA, momentum 0.9 from 100, of
  this process's positive-anchor count). With ``SCALE 0`` and "ema" the losses are RetinaNet's.
  The box loss (and the IoU-branch loss) use the same normaliser as the classification loss.
* ``LOG_PERIOD`` (20): every that many iterations the mean ``g_j`` (``efl/grad_ratio/*``), the
  focusing factor ``gamma_j`` (``efl/gamma/*``) and the weight (``efl/weight/*``) are written to
  Detectron2's ``EventStorage``, per LVIS frequency group (``r``, ``c``, ``f``; from the training
  dataset's metadata ``category_frequency``, else ``class_image_count`` with LVIS's thresholds, else
  LVIS's own category list when the classes are LVIS's) and overall (``all``). 0 disables it.
* The improved baseline (paper sec. 4.1): ``ANCHOR_MATCHER`` "iou" (Detectron2's max-IoU matcher) or
  "atss" (:class:`~libra_d2.modeling.atss_matcher.ATSSMatcher`, ``ATSS_TOPK`` 18);
  ``IOU_BRANCH`` (False): a 3x3 conv on the box subnet predicting one IoU logit per anchor, trained
  with binary cross-entropy (summed over positive anchors, / the normaliser, x ``IOU_LOSS_WEIGHT``)
  against the IoU of the anchor's decoded predicted box with its GT box (a detached target); at
  test time the score of (anchor, class) is ``sigmoid(cls) * sigmoid(iou)``. The other parts of the
  improved baseline are Detectron2 config keys (anchor sizes, GIoU, GN heads, warm-up, gradient
  clipping, repeat-factor sampling): see ``configs/LVISv1-Detection/efl_improved_baseline_*``.
"""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import Boxes, Instances
from detectron2.structures.boxes import matched_pairwise_iou
from torch import Tensor, nn

from ...data.class_frequency import training_frequency_groups
from ...layers.equalized_focal_loss import EFLClassificationLoss
from ...utils.compat import retinanet_head_norm
from ...utils.events import put_scalar_deferred
from ..atss_matcher import ATSSMatcher
from ..dense_efl import (
    check_frequency_groups,
    check_loss_normalizer,
    dense_efl_loss,
    efl_loss_kwargs,
    log_efl_statistics,
    loss_normalizer,
)
from ..matcher import build_matcher
from .libra_retinanet import LibraRetinaNet

__all__ = [
    "EFLRetinaNet",
    "EFLRetinaNetHead",
]


ANCHOR_MATCHERS = ("iou", "atss")


# ----------------------------------------------------------------------------------------------------
# head with the IoU branch
# ----------------------------------------------------------------------------------------------------
class EFLRetinaNetHead(RetinaNetHead):
    """Detectron2's :class:`RetinaNetHead` plus, with ``iou_branch``, an IoU predictor: a 3x3 conv
    on the box subnet's features giving one IoU logit per anchor (``iou_pred``), in the place of
    ATSS's centerness branch. ``forward`` then returns ``(logits, bbox_reg, iou_logits)``, the last
    a list of ``(N, A, Hi, Wi)`` tensors; without it, exactly RetinaNetHead's ``(logits,
    bbox_reg)``.
    """

    @configurable
    def __init__(self, *, iou_branch: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.iou_branch = bool(iou_branch)
        if self.iou_branch:
            conv_dims = list(kwargs["conv_dims"])
            channels = conv_dims[-1] if conv_dims else kwargs["input_shape"][0].channels
            self.iou_pred = nn.Conv2d(
                channels, kwargs["num_anchors"], kernel_size=3, stride=1, padding=1
            )
            nn.init.normal_(self.iou_pred.weight, mean=0, std=0.01)
            nn.init.constant_(self.iou_pred.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["norm"] = retinanet_head_norm(ret["norm"])
        ret["iou_branch"] = cfg.MODEL.EFL.IOU_BRANCH
        return ret

    def forward(self, features: List[Tensor]):
        if not self.iou_branch:
            return super().forward(features)
        logits, bbox_reg, iou = [], [], []
        for feature in features:
            logits.append(self.cls_score(self.cls_subnet(feature)))
            box_feature = self.bbox_subnet(feature)
            bbox_reg.append(self.bbox_pred(box_feature))
            iou.append(self.iou_pred(box_feature))
        return logits, bbox_reg, iou


# ----------------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------------
@META_ARCH_REGISTRY.register()
class EFLRetinaNet(LibraRetinaNet):
    """RetinaNet with Equalized Focal Loss and the switches of EFL's improved baseline (module
    doc)."""

    @configurable
    def __init__(
        self,
        *,
        efl: Optional[Dict] = None,
        loss_normalizer: str = "num_pos",
        iou_branch: bool = False,
        iou_loss_weight: float = 1.0,
        frequency_groups: Optional[Sequence[str]] = None,
        log_period: int = 20,
        **kwargs,
    ):
        """
        Args:
            efl: keyword arguments of :class:`EFLClassificationLoss` (``gamma_b``, ``scale``,
                ``alpha``, ``use_focusing``, ``use_weighting``); None: the paper's (2, 8, 0.25, on,
                on).
            loss_normalizer: "num_pos" or "ema" (module doc).
            iou_branch: the head predicts IoU (it must be an :class:`EFLRetinaNetHead` built with
                ``iou_branch=True``); trained with BCE, multiplied into the scores at test time.
            iou_loss_weight: weight of the IoU-branch loss.
            frequency_groups: one 'r' / 'c' / 'f' per class for the logged statistics, or None.
            log_period: log the statistics every that many iterations (0: never).
            kwargs: :class:`LibraRetinaNet` / :class:`RetinaNet` arguments (``anchor_matcher`` may
                be an :class:`ATSSMatcher`).
        """
        super().__init__(**kwargs)
        self.efl = EFLClassificationLoss(self.num_classes, **(efl or {}))
        self.loss_normalizer_type = check_loss_normalizer(loss_normalizer)
        self.iou_branch = bool(iou_branch)
        if self.iou_branch and not getattr(self.head, "iou_branch", False):
            raise ValueError("iou_branch=True needs a head that predicts IoU (EFLRetinaNetHead)")
        self.iou_loss_weight = float(iou_loss_weight)
        self.frequency_groups = check_frequency_groups(frequency_groups, self.num_classes)
        self.log_period = int(log_period)

    @classmethod
    def from_config(cls, cfg):
        node = cfg.MODEL.get("EFL")
        efl = efl_loss_kwargs(node)
        norm = cfg.MODEL.RETINANET.NORM
        base_cfg = cfg
        if retinanet_head_norm(norm) is not norm:
            # Detectron2's RetinaNetHead cannot build this norm (GN on 0.6): the base builds its
            # (discarded) head without norm, EFLRetinaNetHead builds the real one.
            base_cfg = cfg.clone()
            base_cfg.defrost()
            base_cfg.MODEL.RETINANET.NORM = ""
        ret = super().from_config(base_cfg)
        if node.IOU_BRANCH or base_cfg is not cfg:
            shapes = ret["backbone"].output_shape()
            feature_shapes = [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
            ret["head"] = EFLRetinaNetHead(cfg, feature_shapes)
        matcher = str(node.ANCHOR_MATCHER).lower()
        if matcher == "atss":
            ret["anchor_matcher"] = build_matcher("ATSSMatcher", topk=node.ATSS_TOPK)
        elif matcher != "iou":
            raise ValueError(
                f"MODEL.EFL.ANCHOR_MATCHER={node.ANCHOR_MATCHER!r}; expected one of "
                f"{ANCHOR_MATCHERS}"
            )
        num_classes = cfg.MODEL.RETINANET.NUM_CLASSES
        ret.update(
            efl=efl,
            loss_normalizer=node.LOSS_NORMALIZER,
            iou_branch=node.IOU_BRANCH,
            iou_loss_weight=node.IOU_LOSS_WEIGHT,
            frequency_groups=training_frequency_groups(cfg.DATASETS.TRAIN, num_classes),
            log_period=node.LOG_PERIOD,
        )
        return ret

    # -- anchors ----------------------------------------------------------------------------------
    @torch.no_grad()
    def label_anchors(self, anchors, gt_instances):
        """Detectron2's ``label_anchors`` (same outputs); with an :class:`ATSSMatcher` the anchors
        are
        assigned by ATSS, which sees the anchors per level and the GT boxes."""
        if not isinstance(self.anchor_matcher, ATSSMatcher):
            return super().label_anchors(anchors, gt_instances)
        per_level = [a.tensor for a in anchors]
        num_anchors = sum(a.shape[0] for a in per_level)
        gt_labels, matched_gt_boxes = [], []
        for gt_per_image in gt_instances:
            matched_idxs, anchor_labels = self.anchor_matcher(
                per_level, gt_per_image.gt_boxes.tensor
            )
            if len(gt_per_image) > 0:
                matched_gt_boxes_i = gt_per_image.gt_boxes.tensor[matched_idxs]
                gt_labels_i = gt_per_image.gt_classes[matched_idxs].clone()
                gt_labels_i[anchor_labels == 0] = self.num_classes
                gt_labels_i[anchor_labels == -1] = -1
            else:
                matched_gt_boxes_i = per_level[0].new_zeros((num_anchors, 4))
                gt_labels_i = torch.full(
                    (num_anchors,), self.num_classes, dtype=torch.int64, device=per_level[0].device
                )
            gt_labels.append(gt_labels_i)
            matched_gt_boxes.append(matched_gt_boxes_i)
        return gt_labels, matched_gt_boxes

    # -- training ---------------------------------------------------------------------------------
    def forward_training(self, images, features, predictions, gt_instances):
        if not self.iou_branch:
            return super().forward_training(images, features, predictions, gt_instances)
        pred_logits, pred_anchor_deltas, pred_iou = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(
            anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_iou=pred_iou
        )

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_iou=None):
        """RetinaNet's ``losses`` (same arguments) with EFL as the classification loss.

        Args:
            pred_iou: with the IoU branch, #lvl tensors ``(N, Hi*Wi*A, 1)`` of IoU logits.
        Returns:
            dict with "loss_cls", "loss_box_reg" and, with the IoU branch, "loss_iou".
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = valid_mask & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum()
        put_scalar_deferred("num_pos_anchors", num_pos_anchors / num_images)
        normalizer = loss_normalizer(
            self.loss_normalizer_type, num_pos_anchors, self._update_loss_normalizer
        )
        loss_cls = dense_efl_loss(self.efl, pred_logits, gt_labels, normalizer)
        loss_box_reg = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask)
        losses = {"loss_cls": loss_cls, "loss_box_reg": loss_box_reg / normalizer}
        if pred_iou is not None:
            losses["loss_iou"] = self.iou_branch_loss(
                anchors, pred_anchor_deltas, pred_iou, gt_boxes, pos_mask, normalizer
            )
        if self.training:
            self.log_statistics()
        return losses

    def iou_branch_loss(
        self, anchors, pred_anchor_deltas, pred_iou, gt_boxes, pos_mask, normalizer
    ):
        """BCE between the IoU logits of the positive anchors and the IoU of their decoded predicted
        boxes with their GT boxes (detached), summed, / ``normalizer``, x ``iou_loss_weight``."""
        iou_logits = cat(pred_iou, dim=1)[..., 0][pos_mask]  # (P,)
        with torch.no_grad():
            all_anchors = Boxes.cat(anchors).tensor
            pos_anchors = all_anchors.unsqueeze(0).expand(pos_mask.shape[0], -1, -1)[pos_mask]
            deltas = cat(pred_anchor_deltas, dim=1)[pos_mask].detach().float()
            pred_boxes = self.box2box_transform.apply_deltas(deltas, pos_anchors.float())
            target = matched_pairwise_iou(
                Boxes(pred_boxes), Boxes(torch.stack(gt_boxes)[pos_mask].float())
            )
            target = torch.nan_to_num(target, nan=0.0).clamp_(0.0, 1.0)  # 0/0 of degenerate GTs
        loss = F.binary_cross_entropy_with_logits(iou_logits.float(), target, reduction="sum")
        return loss * (self.iou_loss_weight / normalizer)

    def log_statistics(self) -> Dict[str, float]:
        """``g_j``, ``gamma_j`` and ``w_j`` per frequency group (:func:`log_efl_statistics`)."""
        return log_efl_statistics(self.efl, self.frequency_groups, self.log_period)

    # -- inference --------------------------------------------------------------------------------
    def forward_inference(self, images, features, predictions):
        if not self.iou_branch:
            return super().forward_inference(images, features, predictions)
        pred_logits, pred_anchor_deltas, pred_iou = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores_per_image = [
                x[img_idx].sigmoid() * y[img_idx].sigmoid() for x, y in zip(pred_logits, pred_iou)
            ]
            deltas_per_image = [x[img_idx] for x in pred_anchor_deltas]
            results.append(
                self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size)
            )
        return results
