"""LOCE ("Exploring Classification Equilibrium in Long-Tailed Object Detection", Feng et al.,
ICCV 2021) as a box predictor and ROI heads.

* :class:`LOCEFastRCNNOutputLayers` -- :class:`LibraFastRCNNOutputLayers` that owns LOCE's mean
  classification score vector ``s`` (:class:`~libra_d2.modeling.class_statistics.MeanClassScore`,
  ``C + 1`` fp32 entries, a checkpointed buffer ``roi_heads.box_predictor.mean_score.score``).
  In training, ``s`` is updated *before* the loss of the same step from (a) every GT instance with
  at least one positive RoI: the mean softmax probability of its class over its positive RoIs, and
  (b) every memory class sampled this step: the mean over its memory rows (all-reduced across
  processes by ``MeanClassScore``). The loss is then the Equilibrium Loss (cross-entropy on
  ``z + log s``, :func:`~libra_d2.layers.equilibrium_loss.equilibrium_loss`) when
  ``MODEL.LOCE.EQUILIBRIUM_LOSS`` is on, and the plain loss of ``CLS_LOSS_TYPE`` otherwise
  ("track-only": a mean-score curve for the plain baseline). Inference never uses ``s``.
* :class:`LOCEROIHeads` -- :class:`LibraROIHeads` with Memory-augmented Feature Sampling (MFS): rows
  handed in by the trainer (:meth:`LOCEROIHeads.set_memory_batch`, pooled RoI features with their
  labels and regression targets) are appended to the RoI-pooled features before the box head and
  count in both the classification and the box-regression loss (normalised, like Detectron2's
  losses, by the total number of rows). Each training step the heads also push 16 jittered copies
  of every GT box, RoIAligned from the current (frozen) features, into the attached
  :class:`~libra_d2.modeling.feature_memory.FeatureMemory` (:meth:`LOCEROIHeads.push_to_memory`).

The memory itself, its class-balanced pre-fill and the per-step class sampling belong to the
trainer (``libra_d2/engine/loce.py``); without an attached memory and memory batch the heads behave
as ``LibraROIHeads`` plus the mean-score tracker.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat, cross_entropy
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, Instances

from ...data.class_frequency import training_frequency_groups
from ...layers.equilibrium_loss import equilibrium_loss
from ..box_regression import DELTA_LOSSES, delta_regression_loss
from ..class_statistics import MeanClassScore
from ..feature_memory import FeatureMemory, jitter_boxes
from .fast_rcnn import LibraFastRCNNOutputLayers
from .libra_roi_heads import LibraROIHeads

__all__ = ["MemoryBatch", "LOCEFastRCNNOutputLayers", "LOCEROIHeads", "GT_INDEX_FIELD"]

#: Field of the sampled proposals: index of the matched GT box within its image (LOCEROIHeads sets
#: it).
GT_INDEX_FIELD = "matched_gt_idxs"


@dataclass
class MemoryBatch:
    """Rows sampled from the feature memory for one step (all on the model's device).

    features: (R, *feature_shape) pooled RoI features; targets: (R, 4) box2box deltas (jittered box
    -> its GT); labels: (R,) foreground classes in [0, C).
    """

    features: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor

    @property
    def num_rows(self) -> int:
        return int(self.labels.numel())


def _frequency_groups(dataset_names, num_classes):
    try:
        return training_frequency_groups(dataset_names, num_classes)
    except (KeyError, OSError):  # unknown dataset: log overall means only
        return None


class LOCEFastRCNNOutputLayers(LibraFastRCNNOutputLayers):
    @configurable
    def __init__(
        self,
        input_shape,
        *,
        use_equilibrium_loss: bool = False,
        score_momentum: float = 0.9,
        background_score: float = 0.01,
        init_score: float = 0.01,
        frequency_groups: Optional[Sequence[str]] = None,
        log_period: int = 20,
        **kwargs,
    ):
        """
        Args:
            use_equilibrium_loss: train the classifier with EBL (else the ``cls_loss_type`` loss,
                the mean scores are then only tracked).
            score_momentum: ``a`` of the EMA ``s <- a^n s + (1 - a^n) mean`` (0.9).
            background_score: constant background entry ``s_{C+1}`` (0.01).
            init_score: initial value of every foreground entry (0.01).
            frequency_groups: 'r'/'c'/'f' per class, for logging ``loce/mean_score/{r,c,f}``.
            log_period: log the mean scores every this many iterations (0: never).
            kwargs: :class:`LibraFastRCNNOutputLayers` arguments.
        """
        super().__init__(input_shape, **kwargs)
        if use_equilibrium_loss and self.cls_loss_type != "ce":
            raise ValueError(
                "MODEL.LOCE.EQUILIBRIUM_LOSS replaces the softmax cross-entropy: it needs "
                "MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE 'ce', got {!r}".format(self.cls_loss_type)
            )
        if self.cls_loss_type == "bcr":
            raise ValueError(
                "LOCE's mean scores are softmax probabilities: CLS_LOSS_TYPE 'bcr' "
                "(a sigmoid classifier) cannot be used with LOCEROIHeads"
            )
        self.use_equilibrium_loss = bool(use_equilibrium_loss)
        self.mean_score = MeanClassScore(
            self.num_classes,
            momentum=score_momentum,
            background_value=background_score,
            init_value=init_score,
        )
        self.frequency_groups = list(frequency_groups) if frequency_groups is not None else None
        self.log_period = int(log_period)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        loce = cfg.MODEL.LOCE
        ret.update(
            use_equilibrium_loss=loce.EQUILIBRIUM_LOSS,
            score_momentum=loce.SCORE_MOMENTUM,
            background_score=loce.BACKGROUND_SCORE,
            init_score=loce.INIT_SCORE,
            frequency_groups=_frequency_groups(cfg.DATASETS.TRAIN, cfg.MODEL.ROI_HEADS.NUM_CLASSES),
            log_period=loce.LOG_PERIOD,
        )
        return ret

    # -- mean classification scores --------------------------------------------------------------
    @torch.no_grad()
    def mean_score_entries(self, scores, proposals, memory: Optional[MemoryBatch] = None):
        """This step's (class, value) entries for ``s``: one per GT instance with >= 1 positive RoI
        (mean softmax probability of its class over those RoIs) and one per distinct memory class
        (mean over its rows). ``scores`` holds the proposals' rows, then the memory rows."""
        probs = F.softmax(scores.detach().float(), dim=1)
        classes, values = [], []
        num_props = sum(len(p) for p in proposals)
        if num_props:
            gt_classes = cat([p.gt_classes for p in proposals], dim=0)
            fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
            if not all(p.has(GT_INDEX_FIELD) for p in proposals):
                raise ValueError(
                    "LOCE mean scores need the proposals' '{}' field (set by "
                    "LOCEROIHeads.label_and_sample_proposals)".format(GT_INDEX_FIELD)
                )
            gt_index = cat([p.get(GT_INDEX_FIELD) for p in proposals], dim=0).long()
            image = cat(
                [
                    torch.full((len(p),), i, dtype=torch.long, device=gt_index.device)
                    for i, p in enumerate(proposals)
                ],
                dim=0,
            )
            # (a tensor stride: no host read-back of the largest GT index)
            instance = image * (gt_index.max() + 1) + gt_index
            cls_fg = gt_classes[fg]
            c, v = MeanClassScore.entries_by_instance(
                cls_fg, probs[:num_props][fg, cls_fg], instance[fg]
            )
            classes.append(c)
            values.append(v)
        if memory is not None and memory.num_rows:
            labels = memory.labels.long()
            rows = probs[num_props : num_props + memory.num_rows]
            c, v = MeanClassScore.entries_by_instance(
                labels, rows[torch.arange(labels.numel(), device=rows.device), labels], labels
            )
            classes.append(c)
            values.append(v)
        if not classes:
            return (
                torch.zeros(0, dtype=torch.long, device=scores.device),
                torch.zeros(0, dtype=torch.float32, device=scores.device),
            )
        return torch.cat(classes), torch.cat(values)

    @torch.no_grad()
    def update_mean_scores(self, scores, proposals, memory: Optional[MemoryBatch] = None):
        """Fold this step's entries into ``s`` (all-reduced: every process calls this every step)
        and log the per-frequency-group means periodically."""
        classes, values = self.mean_score_entries(scores, proposals, memory)
        self.mean_score.update(classes, values)
        if self.log_period > 0:
            if self.frequency_groups:
                self.mean_score.log_to_storage(
                    "loce/mean_score", self.frequency_groups, period=self.log_period
                )
            self.mean_score.log_to_storage(
                "loce/mean_score", ["all"] * self.num_classes, period=self.log_period
            )

    # -- losses ----------------------------------------------------------------------------------
    def _plain_classification_loss(self, scores, gt_classes):
        if self.cls_loss_type == "ce":
            return cross_entropy(scores, gt_classes, reduction="mean")
        return self.classification_loss(scores, gt_classes)

    def memory_box_reg_loss(self, pred_deltas, target_deltas, labels):
        """Summed box-regression loss of the memory rows (targets are stored as deltas)."""
        if self.box_reg_loss_type not in DELTA_LOSSES:
            raise ValueError(
                "MFS stores regression targets as deltas: BBOX_REG_LOSS_TYPE must be one of {}, "
                "got {!r}".format(DELTA_LOSSES, self.box_reg_loss_type)
            )
        box_dim = target_deltas.shape[1]
        if pred_deltas.shape[1] != box_dim:  # class-specific regression
            pred_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[
                torch.arange(labels.numel(), device=labels.device), labels
            ]
        return delta_regression_loss(
            pred_deltas,
            target_deltas.to(pred_deltas.dtype),
            self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
            balanced_l1=self.balanced_l1,
        )

    def losses(self, predictions, proposals, memory: Optional[MemoryBatch] = None):
        """Detectron2's / Libra's losses over ``proposals`` (the first rows of ``predictions``) and
        the ``memory`` rows (the last rows). ``s`` is updated first (training only)."""
        scores, deltas = predictions
        num_props = sum(len(p) for p in proposals)
        num_mem = memory.num_rows if memory is not None else 0
        if scores.shape[0] != num_props + num_mem:
            raise ValueError(
                "{} prediction rows for {} proposals + {} memory rows".format(
                    scores.shape[0], num_props, num_mem
                )
            )
        if self.training:
            self.update_mean_scores(scores, proposals, memory)
        losses = super().losses((scores[:num_props], deltas[:num_props]), proposals)
        if num_mem == 0 and not self.use_equilibrium_loss:
            return losses
        gt_classes = (
            cat([p.gt_classes for p in proposals], dim=0)
            if num_props
            else torch.zeros(0, dtype=torch.long, device=scores.device)
        )
        labels = cat([gt_classes, memory.labels.long()]) if num_mem else gt_classes
        if self.use_equilibrium_loss:
            loss_cls = equilibrium_loss(scores, labels, self.mean_score.score)
        else:
            loss_cls = self._plain_classification_loss(scores, labels)
        losses["loss_cls"] = loss_cls * self.loss_weight.get("loss_cls", 1.0)
        if num_mem:
            mem_reg = self.memory_box_reg_loss(
                deltas[num_props:], memory.targets, memory.labels.long()
            )
            # both parts normalised by all rows, as Detectron2 normalises by the sampled RoIs
            losses["loss_box_reg"] = (
                losses["loss_box_reg"] * max(num_props, 1)
                + mem_reg * self.loss_weight.get("loss_box_reg", 1.0)
            ) / (num_props + num_mem)
        return losses


@ROI_HEADS_REGISTRY.register()
class LOCEROIHeads(LibraROIHeads):
    @configurable
    def __init__(
        self, *, memory_feature_shape: Sequence[int] = (256, 7, 7), num_jitter: int = 16, **kwargs
    ):
        """
        Args:
            memory_feature_shape: shape of one pooled RoI feature (channels, res, res); what a
                :class:`FeatureMemory` for these heads stores.
            num_jitter: jittered boxes per GT pushed into the memory each step (16).
            kwargs: :class:`LibraROIHeads` arguments.
        """
        super().__init__(**kwargs)
        if not isinstance(self.box_predictor, LOCEFastRCNNOutputLayers):
            raise ValueError("LOCEROIHeads needs a LOCEFastRCNNOutputLayers box predictor")
        self.memory_feature_shape = tuple(int(x) for x in memory_feature_shape)
        self.num_jitter = int(num_jitter)
        # Set by the trainer (libra_d2/engine/loce.py); plain attributes, never in the state_dict.
        self.memory: Optional[FeatureMemory] = None
        self._memory_batch: Optional[MemoryBatch] = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        res = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        ret["memory_feature_shape"] = (input_shape[in_features[0]].channels, res, res)
        ret["num_jitter"] = cfg.MODEL.LOCE.MFS.NUM_JITTER
        if (
            cfg.MODEL.LOCE.MFS.ENABLED
            and cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE not in DELTA_LOSSES
        ):
            raise ValueError(
                "MODEL.LOCE.MFS stores regression targets as deltas: MODEL.ROI_BOX_HEAD."
                "BBOX_REG_LOSS_TYPE must be one of {}".format(DELTA_LOSSES)
            )
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        # StandardROIHeads' head, then our predictor: the same construction (and RNG draws) as
        # LibraROIHeads, so a track-only LOCE model initialises exactly like a Libra one.
        ret = super(LibraROIHeads, cls)._init_box_head(cfg, input_shape)
        ret["box_predictor"] = LOCEFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

    # -- memory interface (used by the trainer hooks) --------------------------------------------
    def attach_memory(self, memory: Optional[FeatureMemory]) -> None:
        """The memory that training steps push jittered GT features into (None: none)."""
        if memory is not None and tuple(memory.feature_shape) != self.memory_feature_shape:
            raise ValueError(
                "memory stores {} features, the box pooler gives {}".format(
                    memory.feature_shape, self.memory_feature_shape
                )
            )
        self.memory = memory

    def set_memory_batch(self, batch: Optional[MemoryBatch]) -> None:
        """Rows for the next training forward only (consumed by it)."""
        self._memory_batch = batch

    @torch.no_grad()
    def pool_jittered_gt(self, features: Dict[str, torch.Tensor], targets: List[Instances]):
        """``num_jitter`` jittered copies of every GT box (eq. 5), RoIAligned with the box pooler
        from ``features`` (no gradient). Returns (features, box2box deltas jittered -> GT, labels).
        """
        boxes, deltas, labels = [], [], []
        transform = self.box_predictor.box2box_transform
        for t in targets:
            gt = t.gt_boxes.tensor
            jittered = jitter_boxes(gt, self.num_jitter, image_size=t.image_size)
            boxes.append(Boxes(jittered))
            deltas.append(transform.get_deltas(jittered, gt.repeat_interleave(self.num_jitter, 0)))
            labels.append(t.gt_classes.repeat_interleave(self.num_jitter))
        pooled = self.box_pooler([features[f].detach() for f in self.box_in_features], boxes)
        return pooled, cat(deltas, dim=0), cat(labels, dim=0)

    @torch.no_grad()
    def push_to_memory(self, features, targets):
        """Push the pooled jittered GT boxes of ``targets`` into the attached memory; returns the
        number of rows pushed (a tensor, not read back to the host; 0 without a memory)."""
        if self.memory is None or targets is None:
            return 0
        pooled, deltas, labels = self.pool_jittered_gt(features, targets)
        keep = (labels >= 0) & (labels < self.num_classes)
        self.memory.push(pooled[keep], deltas[keep], labels[keep])
        return keep.sum()

    # -- forward ---------------------------------------------------------------------------------
    @staticmethod
    def _sampled_instances(
        proposals_per_image, targets_per_image, matched_idxs, sampled_idxs, gt_classes
    ):
        sampled = LibraROIHeads._sampled_instances(
            proposals_per_image, targets_per_image, matched_idxs, sampled_idxs, gt_classes
        )
        sampled.set(GT_INDEX_FIELD, matched_idxs[sampled_idxs])  # per-instance mean scores
        return sampled

    def forward(self, images, features, proposals, targets=None):
        if self.training:
            self.push_to_memory(features, targets)
        else:
            self._memory_batch = None
        return super().forward(images, features, proposals, targets)

    def _forward_box(self, features, proposals):
        batch, self._memory_batch = self._memory_batch, None  # used by this forward only
        if not self.training or batch is None or batch.num_rows == 0:
            return super()._forward_box(features, proposals)
        feats = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(feats, [x.proposal_boxes for x in proposals])
        num_props = box_features.shape[0]
        box_features = torch.cat([box_features, batch.features.to(box_features)], dim=0)
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        del box_features
        losses = self.box_predictor.losses(predictions, proposals, memory=batch)
        if self.train_on_pred_boxes:
            with torch.no_grad():
                own = (predictions[0][:num_props], predictions[1][:num_props])
                pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(own, proposals)
                for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                    proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
        return losses
