"""``ParallelCascadeROIHeads``: Parallel R-CNN Modules (PRM) in every stage of a Cascade R-CNN.

Every cascade stage (``MODEL.ROI_BOX_CASCADE_HEAD``: IoUs 0.5, 0.6, 0.7 and their box-regression
weights, class-agnostic regression) has one box head + predictor per positive fraction of
``MODEL.PRM.POSITIVE_FRACTIONS``. Module k of stage s is ``box_heads.<k>.<s>`` /
``box_predictors.<k>.<s>``; the regression module is the one with the highest positive fraction.

Training:

* stage 0 is :class:`ParallelROIHeads`: the RPN proposals (and the ground truth) are matched once
  and every module draws its own sample at its positive fraction (Libra's samplers apply here).
  The RoI features of the union of the samples are pooled once.
* stage s > 0 works, as Detectron2's ``CascadeROIHeads``, on the boxes that stage s - 1 predicted
  for its RoIs, relabelled at stage s's IoU, without sampling. The boxes come from stage s - 1's
  regression module (at test time, too, stage s sees those boxes), applied to every RoI of the
  union. Module k of stage s is trained on the refinements of its own stage-0 sample: the 1:9
  module keeps its negative-heavy set through the cascade, and every RoI is pooled once per stage.
* As in ``CascadeROIHeads``, every stage's gradient into the shared features is divided by the
  number of stages, and the losses are named per stage and module (``loss_cls_stage<s>_h<k>``).
* The mask (keypoint) head is trained on the regression module's stage-0 sample (Detectron2's
  Cascade trains it on its stage-0 sample).

Inference: in every stage all modules score the same boxes; their class logits (before softmax /
sigmoid) are averaged, the stage's probabilities are those of the averaged logits, and the next
stage's boxes come from the regression module. The detections take the stages' mean
probabilities and the last stage's boxes (``CascadeROIHeads``' rule). ``MODEL.PRM.TEST_HEAD = k``
uses module k alone in every stage.

With one module and the same weights this is Detectron2's ``CascadeROIHeads``: same sample, same
losses, gradients and detections (tested). A Detectron2 Cascade R-CNN checkpoint
(``box_head.<s>.*``) loads into every module.
"""

from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage
from torch import nn

from ...layers.scale_gradient import scale_gradient
from ...utils.events import put_scalar_deferred
from .libra_roi_heads import sample_counts
from .parallel_roi_heads import ParallelROIHeads, per_head_scalars

__all__ = ["ParallelCascadeROIHeads"]


@ROI_HEADS_REGISTRY.register()
class ParallelCascadeROIHeads(ParallelROIHeads):
    @configurable
    def __init__(self, *, box_heads, box_predictors, stage_matchers: Sequence[Matcher], **kwargs):
        """
        Args:
            box_heads, box_predictors: per module (positive fraction), one box head / predictor
                per cascade stage.
            stage_matchers: the matchers of stages 1, 2, ... (stage 0 matches the proposals with
                ``proposal_matcher``, whose match quality Libra's samplers use).
            kwargs: :class:`ParallelROIHeads` arguments.
        """
        box_heads = [nn.ModuleList(stages) for stages in box_heads]
        box_predictors = [nn.ModuleList(stages) for stages in box_predictors]
        num_stages = len(stage_matchers) + 1
        lengths = {len(m) for m in box_heads} | {len(m) for m in box_predictors}
        if lengths != {num_stages}:
            raise ValueError(
                "ParallelCascadeROIHeads needs one box head and one box predictor per stage in "
                "every module: {} stages (matchers), got {} box heads and {} predictors".format(
                    num_stages, [len(m) for m in box_heads], [len(m) for m in box_predictors]
                )
            )
        if kwargs.get("train_on_pred_boxes"):
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES has no meaning in a cascade (Detectron2's "
                "CascadeROIHeads does not use it either)"
            )
        super().__init__(box_heads=box_heads, box_predictors=box_predictors, **kwargs)
        self.stage_matchers = list(stage_matchers)
        self.num_cascade_stages = num_stages

    @classmethod
    def from_config(cls, cfg, input_shape):
        cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
        if cascade.IOUS[0] != cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]:
            raise ValueError(
                "MODEL.ROI_BOX_CASCADE_HEAD.IOUS[0]={} must equal "
                "MODEL.ROI_HEADS.IOU_THRESHOLDS[0]={} (stage 0 samples the proposals "
                "with the ROI_HEADS matcher)".format(
                    cascade.IOUS[0], cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]
                )
            )
        ret = super().from_config(cfg, input_shape)
        ret["stage_matchers"] = [
            Matcher([iou], [0, 1], allow_low_quality_matches=False) for iou in cascade.IOUS[1:]
        ]
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
        if len(cascade.BBOX_REG_WEIGHTS) != len(cascade.IOUS):
            raise ValueError(
                "MODEL.ROI_BOX_CASCADE_HEAD has {} IOUS but {} BBOX_REG_WEIGHTS".format(
                    len(cascade.IOUS), len(cascade.BBOX_REG_WEIGHTS)
                )
            )
        if not cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG:
            raise ValueError(
                "ParallelCascadeROIHeads, like CascadeROIHeads, needs class-agnostic regression: "
                "set MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG True"
            )
        num_modules = len(cfg.MODEL.PRM.POSITIVE_FRACTIONS)
        heads = [[] for _ in range(num_modules)]
        predictors = [[] for _ in range(num_modules)]
        ret = None
        # Stage by stage, a box head then its predictor, as CascadeROIHeads builds them.
        for weights in cascade.BBOX_REG_WEIGHTS:
            for k in range(num_modules):
                one = cls._init_single_box_head(cfg, input_shape)
                heads[k].append(one.pop("box_head"))
                predictor = one.pop("box_predictor")
                # the stage's regression weights (a stateless transform; nothing else differs)
                predictor.box2box_transform = Box2BoxTransform(weights=tuple(weights))
                predictors[k].append(predictor)
                ret = ret or one
        ret["box_heads"] = heads
        ret["box_predictors"] = predictors
        return ret

    # ------------------------------------------------------------------ forward
    def _stage_predictions(self, stage, k, box_features):
        return self.box_predictors[k][stage](self.box_heads[k][stage](box_features))

    @torch.no_grad()
    def _next_stage_boxes(self, boxes: List[torch.Tensor], image_sizes):
        """The previous stage's predicted boxes, clipped to the image, as the next stage's input.
        Training drops empty boxes (as ``CascadeROIHeads``) and returns each image's kept mask."""
        out, keep = [], []
        for b, size in zip(boxes, image_sizes):
            b = Boxes(b.detach())
            b.clip(size)
            # not at inference: every stage scores the same boxes, whose scores are averaged
            k = b.nonempty() if self.training else None
            out.append(b if k is None else b[k])
            keep.append(k)
        return out, keep

    @torch.no_grad()
    def _label_stage(self, boxes: List[Boxes], targets: List[Instances], stage: int):
        """Every box of every image matched at ``stage``'s IoU: Instances with
        ``proposal_boxes``, ``gt_classes`` and the matched ground truth's ``gt_*`` fields."""
        out = []
        for boxes_per_image, targets_per_image in zip(boxes, targets):
            instances = Instances(targets_per_image.image_size)
            instances.proposal_boxes = boxes_per_image
            quality = pairwise_iou(targets_per_image.gt_boxes, boxes_per_image)
            matched_idxs, matched_labels = self.stage_matchers[stage - 1](quality)
            labels = self._proposal_labels(
                matched_idxs, matched_labels, targets_per_image.gt_classes
            )
            everything = torch.arange(len(boxes_per_image), device=labels.device)
            out.append(
                self._sampled_instances(
                    instances, targets_per_image, matched_idxs, everything, labels
                )
            )
        return out

    def _forward_box(
        self, features: Dict[str, torch.Tensor], proposals, union=None, rows=None, targets=None
    ):
        """Training: ``proposals``, ``union``, ``rows`` as returned by
        :meth:`_label_and_sample_union` (stage 0); returns the losses. Inference: ``proposals``
        is a list over images; returns the predicted instances."""
        features = [features[f] for f in self.box_in_features]
        if self.training:
            return self._cascade_losses(features, proposals, union, rows, targets)
        image_sizes = [x.image_size for x in proposals]
        heads = range(self.num_heads) if self.test_head < 0 else [self.test_head]
        reg = self.regression_head if self.test_head < 0 else self.test_head
        boxes = [x.proposal_boxes for x in proposals]
        probs_per_stage, predicted = [], None
        for stage in range(self.num_cascade_stages):
            if stage > 0:
                boxes, _ = self._next_stage_boxes(predicted, image_sizes)
            stage_proposals = [_instances(b, s) for b, s in zip(boxes, image_sizes)]
            box_features = self.box_pooler(features, boxes)
            logits, deltas = [], None
            for k in heads:
                scores_k, deltas_k = self._stage_predictions(stage, k, box_features)
                logits.append(scores_k)
                if k == reg:
                    deltas = deltas_k
            del box_features
            scores = logits[0] if len(logits) == 1 else torch.stack(logits).mean(dim=0)
            predictor = self.box_predictors[reg][stage]
            probs_per_stage.append(predictor.predict_probs((scores, deltas), stage_proposals))
            predicted = predictor.predict_boxes((scores, deltas), stage_proposals)
        scores = [
            sum(per_image) * (1.0 / self.num_cascade_stages) for per_image in zip(*probs_per_stage)
        ]
        predictor = self.box_predictors[reg][-1]
        pred_instances, _ = fast_rcnn_inference(
            predicted,
            scores,
            image_sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        return pred_instances

    def _cascade_losses(self, features, per_head, union, rows, targets):
        n, reg = self.num_heads, self.regression_head
        image_sizes = [t.image_size for t in targets]
        # rows[k] -> per image: module k's RoIs among the image's union boxes
        sizes = [len(b) for b in union]
        offsets = torch.tensor([0] + sizes[:-1]).cumsum(0).tolist()
        rows_per_image = [
            [r - o for r, o in zip(torch.split(rows[k], [len(p) for p in per_head[k]]), offsets)]
            for k in range(n)
        ]
        storage = get_event_storage()
        losses, boxes, module_proposals, predicted = {}, union, per_head, None
        for stage in range(self.num_cascade_stages):
            if stage > 0:
                boxes, keep = self._next_stage_boxes(predicted, image_sizes)
                for k in range(n):
                    rows_per_image[k] = [_kept_rows(r, m) for r, m in zip(rows_per_image[k], keep)]
                labelled = self._label_stage(boxes, targets, stage)
                module_proposals = [
                    [x[r] for x, r in zip(labelled, rows_per_image[k])] for k in range(n)
                ]
            offsets = torch.tensor([0] + [len(b) for b in boxes[:-1]]).cumsum(0).tolist()
            stage_rows = [
                torch.cat([r + o for r, o in zip(rows_per_image[k], offsets)]) for k in range(n)
            ]
            box_features = self.box_pooler(features, boxes)
            # CascadeROIHeads: the losses are summed over stages, the features' gradient averaged
            box_features = scale_gradient(box_features, 1.0 / self.num_cascade_stages)
            for k in range(n):
                if k == reg:  # every union RoI: its boxes are the next stage's input
                    all_predictions = self._stage_predictions(stage, k, box_features)
                    predictions = tuple(p.index_select(0, stage_rows[k]) for p in all_predictions)
                else:
                    predictions = self._stage_predictions(
                        stage, k, box_features.index_select(0, stage_rows[k])
                    )
                with storage.name_scope("stage{}".format(stage)):
                    with per_head_scalars("_h{}".format(k), keep_original=k == reg):
                        stage_losses = self.box_predictors[k][stage].losses(
                            predictions, module_proposals[k]
                        )
                for name, value in stage_losses.items():
                    losses["{}_stage{}_h{}".format(name, stage, k)] = value
            if stage > 0:
                self._log_stage_samples(stage, module_proposals)
            del box_features
            if stage + 1 < self.num_cascade_stages:
                union_proposals = [_instances(b, s) for b, s in zip(boxes, image_sizes)]
                predicted = self.box_predictors[reg][stage].predict_boxes(
                    all_predictions, union_proposals
                )
        return losses

    def _log_stage_samples(self, stage, module_proposals):
        """``stage<s>/roi_head/num_fg_samples`` / ``num_bg_samples`` of the regression module (the
        names of ``CascadeROIHeads``) and ``prm/stage<s>/num_fg_samples_h<k>`` of every module."""
        for k, proposals in enumerate(module_proposals):
            num_fg, num_bg = sample_counts(proposals, self.num_classes)
            put_scalar_deferred("prm/stage{}/num_fg_samples_h{}".format(stage, k), num_fg)
            if k == self.regression_head:
                put_scalar_deferred("stage{}/roi_head/num_fg_samples".format(stage), num_fg)
                put_scalar_deferred("stage{}/roi_head/num_bg_samples".format(stage), num_bg)


def _instances(boxes: Boxes, image_size) -> Instances:
    instances = Instances(image_size)
    instances.proposal_boxes = boxes
    return instances


def _kept_rows(rows: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``rows`` (indices into boxes before filtering by ``keep``) as indices into the kept boxes;
    rows of dropped boxes are removed."""
    new_index = torch.cumsum(keep.long(), dim=0) - 1
    return new_index[rows[keep[rows]]]
