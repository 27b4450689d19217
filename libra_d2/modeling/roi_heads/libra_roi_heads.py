"""``LibraROIHeads``: Detectron2's ``StandardROIHeads`` with Libra R-CNN's sample-level balance
(IoU-balanced negatives; instance- or class-balanced positives) and its box predictor
(:class:`LibraFastRCNNOutputLayers`). Masks work as in ``StandardROIHeads`` (Libra Mask R-CNN)."""

from typing import List, NamedTuple, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances, pairwise_iou

from ...utils.events import put_scalar_deferred
from ..matcher import build_matcher
from ..sampling import LibraSamplingConfig, sampling_config_from_cfg
from .fast_rcnn import LibraFastRCNNOutputLayers

__all__ = ["ImageSample", "LibraROIHeads"]

#: Negatives above this IoU are "hard" in the paper's Fig. 3; their share is logged every step.
HARD_NEGATIVE_IOU = 0.05


class ImageSample(NamedTuple):
    """One R-CNN module's training sample of one image."""

    #: the sampled proposals, with ``gt_classes`` and the matched ground truth's ``gt_*`` fields
    instances: Instances
    #: their indices among the image's proposals (ground truth appended)
    indices: torch.Tensor
    #: the max IoU with any ground truth of each sampled negative
    negative_ious: torch.Tensor


def sample_counts(instances: Sequence[Instances], num_classes: int):
    """``(num_fg, num_bg)``: the mean number of foreground / background RoIs per image of one
    module's labelled RoIs (``gt_classes``; ``num_classes`` is background), as 0-d tensors (no
    host synchronisation)."""
    num_bg = torch.stack([(x.gt_classes == num_classes).sum() for x in instances])
    num_sampled = torch.tensor([len(x) for x in instances], device=num_bg.device)
    return (num_sampled - num_bg).float().mean(), num_bg.float().mean()


@ROI_HEADS_REGISTRY.register()
class LibraROIHeads(StandardROIHeads):
    @configurable
    def __init__(self, *, sampling: LibraSamplingConfig = LibraSamplingConfig(), **kwargs):
        """
        Args:
            sampling: how RoIs are subsampled for training; the default is Detectron2's.
            kwargs: ``StandardROIHeads`` arguments.
        """
        super().__init__(**kwargs)
        self.sampling = sampling

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["sampling"] = sampling_config_from_cfg(cfg.MODEL.ROI_HEADS.SAMPLER)
        # A matcher from libra_d2's MATCHER_REGISTRY that also reports every proposal's max IoU
        # (``match_with_quality``), which IoU-balanced sampling bins on.
        ret["proposal_matcher"] = build_matcher(
            cfg.MODEL.ROI_HEADS.MATCHER,
            thresholds=cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS,
            labels=cfg.MODEL.ROI_HEADS.IOU_LABELS,
            allow_low_quality_matches=False,
        )
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = LibraFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

    def _proposal_labels(self, matched_idxs, matched_labels, gt_classes):
        """Detectron2's per-proposal labels: the matched GT's class, ``num_classes`` for
        background, -1 for ignored proposals."""
        if gt_classes.numel() > 0:
            labels = gt_classes[matched_idxs]
            labels[matched_labels == 0] = self.num_classes
            labels[matched_labels == -1] = -1
            return labels
        return torch.zeros_like(matched_idxs) + self.num_classes

    def _sample_proposals_balanced(
        self, matched_idxs, matched_labels, max_ious, gt_classes, positive_fraction=None
    ):
        """``_sample_proposals`` with Libra sampling (and optionally another positive fraction);
        also returns the sampled negatives' IoUs."""
        labels = self._proposal_labels(matched_idxs, matched_labels, gt_classes)
        fg_idxs, bg_idxs = self.sampling.subsample(
            labels,
            self.batch_size_per_image,
            self.positive_fraction if positive_fraction is None else positive_fraction,
            self.num_classes,
            max_ious=max_ious,
            matched_idxs=matched_idxs,
        )
        sampled_idxs = torch.cat([fg_idxs, bg_idxs], dim=0)
        return sampled_idxs, labels[sampled_idxs], max_ious[bg_idxs]

    @staticmethod
    def _sampled_instances(
        proposals_per_image, targets_per_image, matched_idxs, sampled_idxs, gt_classes
    ):
        """The sampled proposals with their labels and their matched ground truth's ``gt_*``
        fields (as Detectron2's ``label_and_sample_proposals`` builds them)."""
        sampled = proposals_per_image[sampled_idxs]
        sampled.gt_classes = gt_classes
        if len(targets_per_image) > 0:
            sampled_targets = matched_idxs[sampled_idxs]
            for name, value in targets_per_image.get_fields().items():
                if name.startswith("gt_") and not sampled.has(name):
                    sampled.set(name, value[sampled_targets])
        return sampled

    def _sample_modules(self, matched_idxs, matched_labels, max_ious, gt_classes):
        """One ``(sampled_idxs, gt_classes, negative_ious)`` per R-CNN module of one image's matched
        proposals (here one module; ``ParallelROIHeads`` samples for each of its modules)."""
        return [self._sample_proposals_balanced(matched_idxs, matched_labels, max_ious, gt_classes)]

    def sample_image(
        self, proposals_per_image: Instances, targets_per_image: Instances
    ) -> List[ImageSample]:
        """Match one image's proposals to its ground truth once, then sample them for every R-CNN
        module: one :class:`ImageSample` per module."""
        quality = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
        matched_idxs, matched_labels, max_ious = self.proposal_matcher.match_with_quality(quality)
        samples = self._sample_modules(
            matched_idxs, matched_labels, max_ious, targets_per_image.gt_classes
        )
        return [
            ImageSample(
                self._sampled_instances(
                    proposals_per_image, targets_per_image, matched_idxs, idxs, classes
                ),
                idxs,
                bg_ious,
            )
            for idxs, classes, bg_ious in samples
        ]

    def log_samples(self, samples: Sequence[ImageSample]) -> None:
        """Detectron2's ``roi_head/num_fg_samples`` / ``num_bg_samples`` and the share of hard
        negatives (IoU > ``HARD_NEGATIVE_IOU``) of one module's samples of a batch."""
        num_fg, num_bg = sample_counts([s.instances for s in samples], self.num_classes)
        put_scalar_deferred("roi_head/num_fg_samples", num_fg)
        put_scalar_deferred("roi_head/num_bg_samples", num_bg)
        neg_ious = torch.cat([s.negative_ious for s in samples])
        if neg_ious.numel():
            put_scalar_deferred(
                "roi_head/hard_neg_fraction", (neg_ious > HARD_NEGATIVE_IOU).float().mean()
            )

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals, targets):
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        samples = [self.sample_image(p, t)[0] for p, t in zip(proposals, targets)]
        self.log_samples(samples)
        return [s.instances for s in samples]
