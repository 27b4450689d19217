"""``ParallelROIHeads``: Parallel R-CNN Modules (PRM).

N box heads + box predictors on one backbone and RPN. In training, the proposals of every image
are matched to the ground truth once; then every head draws its own sample of them (same
``BATCH_SIZE_PER_IMAGE``, its own positive fraction; default 0.5 and 0.1, i.e. 1:1 and 1:9) and
is trained on it. The losses of all heads are summed (named ``loss_cls_h<k>``,
``loss_box_reg_h<k>``, ...), so the shared backbone receives the sum of their gradients.

Training cost: the RoI features of the *union* of the heads' samples are pooled once per step
(RoIAlign forward and backward on CPU are the largest per-head cost; every head then indexes its
rows, which are identical to pooling its sample alone). With ``nested_sampling`` (the default,
``MODEL.PRM.NESTED_SAMPLING``) and Detectron2's random sampler, the heads' samples are nested
prefixes of one random order of the positives and one of the negatives: head k takes the first
``num_pos_k`` positives and the first ``num_neg_k`` negatives. Every head's sample is still a
uniformly random subset of its own size (the same marginal distribution, positive fraction and
batch size as sampling it alone); only the heads' samples are correlated (the 1:9 head's
positives are a subset of the 1:1 head's, its negatives a superset), as the paper describes them
("almost subsets"). The union is then ``max num_pos + max num_neg`` RoIs per image (64 + 115 =
179 for 1:1 and 1:9 of 128) instead of up to 256. With Libra's balanced samplers the heads are
sampled independently (a subset of a balanced sample is not a balanced sample of the smaller
size), as with ``nested_sampling=False``.

Inference: the RoI features of the proposals are pooled once, every head computes its class
logits, the logits (before softmax / sigmoid) are averaged, the box deltas are taken from the
head with the highest positive fraction (its regression saw the most positives), and Detectron2's
``fast_rcnn_inference`` (score threshold, per-class NMS, top-k) runs once through that head's
predictor, whose test settings apply. ``test_head=k`` evaluates head k alone.

Masks / keypoints: in training the mask (keypoint) head is trained on the positives sampled by the
head with the highest positive fraction (the largest positive set, the one whose boxes are used at
test time; with ``train_on_pred_boxes`` on that head's predicted boxes). At inference it runs on
the merged detections, as in ``StandardROIHeads``.

With one head this is exactly :class:`LibraROIHeads` (and hence ``StandardROIHeads`` with the
default sampler): same construction order, same random draws, same losses and outputs.

Everything else (Libra sampling, matcher, box predictor and its losses, BFP backbones) is
inherited from :class:`LibraROIHeads`, so PRM composes with Libra R-CNN and with RGA (whose
default module prefixes include ``roi_heads.box_heads`` and ``roi_heads.box_predictors``).

Parameters: ``box_heads.<k>.*`` and ``box_predictors.<k>.*``. A single-head checkpoint
(``box_head.*``, ``box_predictor.*``) loads into every head.
"""

import contextlib
import logging
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from ...utils.events import put_scalar_deferred
from .libra_roi_heads import LibraROIHeads, sample_counts

__all__ = ["ParallelROIHeads"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def per_head_scalars(suffix: str, keep_original: bool):
    """Within the block, scalars put into the current EventStorage (e.g. the box predictor's
    ``fast_rcnn/cls_accuracy``) are named ``<name><suffix>``; with ``keep_original`` they are also
    put under their own name. Keeps the heads' statistics apart in the logs."""
    storage = get_event_storage()
    put = storage.put_scalar

    def put_suffixed(name, *args, **kwargs):
        put(name + suffix, *args, **kwargs)
        if keep_original:
            put(name, *args, **kwargs)

    storage.put_scalar = put_suffixed  # shadows the method on this instance only
    try:
        yield
    finally:
        del storage.put_scalar


@ROI_HEADS_REGISTRY.register()
class ParallelROIHeads(LibraROIHeads):
    @configurable
    def __init__(
        self,
        *,
        box_heads: Sequence[nn.Module],
        box_predictors: Sequence[nn.Module],
        positive_fractions: Sequence[float] = (0.5, 0.1),
        test_head: int = -1,
        nested_sampling: bool = True,
        **kwargs,
    ):
        """
        Args:
            box_heads, box_predictors: one box head and one predictor (``FastRCNNOutputLayers``
                interface) per parallel R-CNN module.
            positive_fractions: each module's positive fraction of its sampled RoIs.
            test_head: -1: ensemble at inference; k: use module k alone.
            nested_sampling: with the random sampler, draw the modules' samples as nested
                prefixes of one random order (see the module docstring); False: every module
                samples independently. No effect with one module or with balanced samplers.
            kwargs: :class:`LibraROIHeads` arguments except ``box_head`` / ``box_predictor``
                (``positive_fraction`` is replaced by the per-module fractions).
        """
        box_heads, box_predictors = list(box_heads), list(box_predictors)
        fractions = [float(f) for f in positive_fractions]
        n = len(fractions)
        if n == 0 or len(box_heads) != n or len(box_predictors) != n:
            raise ValueError(
                "ParallelROIHeads needs one box head and one box predictor per positive fraction; "
                "got {} fractions, {} box heads, {} box predictors".format(
                    n, len(box_heads), len(box_predictors)
                )
            )
        if not all(0.0 < f <= 1.0 for f in fractions):
            raise ValueError(
                "MODEL.PRM.POSITIVE_FRACTIONS must be in (0, 1], got {}".format(fractions)
            )
        if not -1 <= test_head < n:
            raise ValueError(
                "MODEL.PRM.TEST_HEAD={} but there are {} heads (-1 = ensemble)".format(test_head, n)
            )
        kwargs.pop("box_head", None)
        kwargs.pop("box_predictor", None)
        # The module with the highest positive fraction (the first of equals): its box regression
        # is used at test time and its positives train the mask / keypoint heads.
        regression_head = int(np.argmax(fractions))
        kwargs["positive_fraction"] = fractions[regression_head]
        super().__init__(box_head=box_heads[0], box_predictor=box_predictors[0], **kwargs)
        # StandardROIHeads registered the first head as `box_head` / `box_predictor`: replace them
        # by the lists (the read-only properties below give the regression head's modules).
        del self.box_head
        del self.box_predictor
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.positive_fractions = tuple(fractions)
        self.regression_head = regression_head
        self.test_head = int(test_head)
        self.nested_sampling = bool(nested_sampling)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["positive_fractions"] = list(cfg.MODEL.PRM.POSITIVE_FRACTIONS)
        ret["test_head"] = cfg.MODEL.PRM.TEST_HEAD
        ret["nested_sampling"] = cfg.MODEL.PRM.NESTED_SAMPLING
        return ret

    @classmethod
    def _init_single_box_head(cls, cfg, input_shape):
        """One R-CNN module as :class:`LibraROIHeads` builds its only one: ``box_in_features``,
        ``box_pooler``, ``box_head`` and ``box_predictor``."""
        return super()._init_box_head(cfg, input_shape)

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        # Every module is built exactly like LibraROIHeads' single one, in order (so that one
        # module consumes the same random numbers as LibraROIHeads and has the same weights).
        heads, predictors, ret = [], [], None
        for _ in cfg.MODEL.PRM.POSITIVE_FRACTIONS:
            one = cls._init_single_box_head(cfg, input_shape)
            heads.append(one.pop("box_head"))
            predictors.append(one.pop("box_predictor"))
            ret = ret or one
        ret["box_heads"] = heads
        ret["box_predictors"] = predictors
        return ret

    # Code written for a single box head (e.g. reading test thresholds) sees the regression head.
    @property
    def box_head(self) -> nn.Module:
        return self.box_heads[self.regression_head]

    @property
    def box_predictor(self) -> nn.Module:
        return self.box_predictors[self.regression_head]

    @property
    def num_heads(self) -> int:
        return len(self.positive_fractions)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A single-head checkpoint (box_head.*, box_predictor.*) initialises every module.
        for single, multi in (("box_head.", "box_heads."), ("box_predictor.", "box_predictors.")):
            old = [k for k in state_dict if k.startswith(prefix + single)]
            if not old or any(k.startswith(prefix + multi) for k in state_dict):
                continue
            for k in old:
                value = state_dict.pop(k)
                rest = k[len(prefix + single) :]
                for i in range(self.num_heads):
                    state_dict["{}{}{}.{}".format(prefix, multi, i, rest)] = value
            logger.info(
                "Loaded single-head %s* weights into all %d parallel R-CNN modules",
                prefix + single,
                self.num_heads,
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ sampling
    def _sample_nested(self, matched_idxs, matched_labels, max_ious, gt_classes):
        """Every module's sample as prefixes of one random order of the positives and one of the
        negatives (Detectron2's ``subsample_labels`` counts and recipe: ``randperm`` then the
        first ``n``). Returns one ``(sampled_idxs, gt_classes, bg_ious)`` per module."""
        labels = self._proposal_labels(matched_idxs, matched_labels, gt_classes)
        positive = torch.nonzero((labels != -1) & (labels != self.num_classes), as_tuple=True)[0]
        negative = torch.nonzero(labels == self.num_classes, as_tuple=True)[0]
        b = self.batch_size_per_image
        num_pos = [min(positive.numel(), int(b * f)) for f in self.positive_fractions]
        num_neg = [min(negative.numel(), b - p) for p in num_pos]
        positive = positive[
            torch.randperm(positive.numel(), device=positive.device)[: max(num_pos)]
        ]
        negative = negative[
            torch.randperm(negative.numel(), device=negative.device)[: max(num_neg)]
        ]
        out = []
        for p, q in zip(num_pos, num_neg):
            sampled_idxs = torch.cat([positive[:p], negative[:q]])
            out.append((sampled_idxs, labels[sampled_idxs], max_ious[negative[:q]]))
        return out

    def _sample_modules(self, matched_idxs, matched_labels, max_ious, gt_classes):
        """Every module's sample of one image: nested (see the module docstring) or each drawn
        alone at its positive fraction."""
        if self.nested_sampling and self.num_heads > 1 and self.sampling.is_random:
            return self._sample_nested(matched_idxs, matched_labels, max_ious, gt_classes)
        return [
            self._sample_proposals_balanced(
                matched_idxs, matched_labels, max_ious, gt_classes, positive_fraction=fraction
            )
            for fraction in self.positive_fractions
        ]

    @torch.no_grad()
    def _label_and_sample_union(self, proposals: List[Instances], targets: List[Instances]):
        """Match the proposals once, then sample them once per module.

        Returns:
            ``(per_head, union, rows)``: ``per_head[k][i]`` the proposals of image i sampled for
            module k (as :meth:`label_and_sample_proposals_per_head`); ``union[i]`` the
            ``Boxes`` of the union of the modules' samples of image i (each proposal once);
            ``rows[k]`` the rows of module k's sampled proposals (all images, in order) among
            the concatenated union boxes.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        n = self.num_heads
        per_image = [self.sample_image(p, t) for p, t in zip(proposals, targets)]
        per_head = [[samples[k] for samples in per_image] for k in range(n)]
        union, rows, offset = [], [[] for _ in range(n)], 0
        for proposals_per_image, samples in zip(proposals, per_image):
            if n == 1:  # the module's sample itself, in its order
                union_idxs = samples[0].indices
                inverse = torch.arange(len(union_idxs), device=union_idxs.device)
            else:
                union_idxs, inverse = torch.unique(
                    torch.cat([s.indices for s in samples]), return_inverse=True
                )
            union.append(proposals_per_image.proposal_boxes[union_idxs])
            for k, part in enumerate(torch.split(inverse, [len(s.indices) for s in samples])):
                rows[k].append(part + offset)
            offset += union_idxs.numel()

        # The single-head names carry the regression head's numbers (one head: LibraROIHeads').
        self.log_samples(per_head[self.regression_head])
        instances = [[s.instances for s in samples] for samples in per_head]
        for k in range(n):
            num_fg, num_bg = sample_counts(instances[k], self.num_classes)
            put_scalar_deferred("prm/num_fg_samples_h{}".format(k), num_fg)
            put_scalar_deferred("prm/num_bg_samples_h{}".format(k), num_bg)
        if n > 1:
            get_event_storage().put_scalar("prm/pooled_rois_per_image", offset / max(len(union), 1))
        return instances, union, [torch.cat(r) for r in rows]

    def label_and_sample_proposals_per_head(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> List[List[Instances]]:
        """Match the proposals once, then sample them once per module.

        Returns:
            ``out[k][i]``: the proposals of image i sampled for module k, with ``gt_classes`` and
            the matched ``gt_*`` fields (as ``label_and_sample_proposals`` of a single head).
        """
        return self._label_and_sample_union(proposals, targets)[0]

    def label_and_sample_proposals(self, proposals, targets):
        """The regression head's sample (the single-head API)."""
        return self.label_and_sample_proposals_per_head(proposals, targets)[self.regression_head]

    # ------------------------------------------------------------------ forward
    def forward(self, images, features, proposals, targets=None):
        del images
        if not self.training:
            pred_instances = self._forward_box(features, proposals)
            pred_instances = self.forward_with_given_boxes(features, pred_instances)
            return pred_instances, {}
        assert targets, "'targets' argument is required during training"
        per_head, union, rows = self._label_and_sample_union(proposals, targets)
        losses = self._forward_box(features, per_head, union=union, rows=rows, targets=targets)
        main = per_head[self.regression_head]
        losses.update(self._forward_mask(features, main))
        losses.update(self._forward_keypoint(features, main))
        return main, losses

    def _head_predictions(self, k, box_features):
        return self.box_predictors[k](self.box_heads[k](box_features))

    def _forward_box(
        self, features: Dict[str, torch.Tensor], proposals, union=None, rows=None, targets=None
    ):
        """
        Training: ``proposals[k]`` is module k's sampled proposals (a list over images); returns
        the summed-by-the-caller loss dict with per-module names ``<loss>_h<k>``. With ``union``
        and ``rows`` (see :meth:`_label_and_sample_union`) the union's RoI features are pooled
        once and module k takes its rows; without, every module pools its own proposals.
        ``targets`` (the ground truth) is unused here; later cascade stages match against it.
        Inference: ``proposals`` is a list over images; returns the predicted instances.
        """
        features = [features[f] for f in self.box_in_features]
        if self.training:
            losses = {}
            # One module: its own sample (exactly LibraROIHeads' computation).
            pooled = None
            if union is not None and self.num_heads > 1:
                pooled = self.box_pooler(features, union)
            for k, proposals_k in enumerate(proposals):
                if pooled is None:
                    box_features = self.box_pooler(
                        features, [x.proposal_boxes for x in proposals_k]
                    )
                else:
                    box_features = pooled.index_select(0, rows[k])
                predictions = self._head_predictions(k, box_features)
                del box_features
                predictor = self.box_predictors[k]
                # The predictor's statistics (fast_rcnn/cls_accuracy, ...) get the head's suffix;
                # the regression head's are also logged under the single-head names.
                with per_head_scalars("_h{}".format(k), keep_original=k == self.regression_head):
                    head_losses = predictor.losses(predictions, proposals_k)
                if self.train_on_pred_boxes and k == self.regression_head:
                    with torch.no_grad():
                        pred_boxes = predictor.predict_boxes_for_gt_classes(
                            predictions, proposals_k
                        )
                        for p, boxes in zip(proposals_k, pred_boxes):
                            p.proposal_boxes = Boxes(boxes)
                for name, value in head_losses.items():
                    losses["{}_h{}".format(name, k)] = value
            del pooled
            return losses

        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        heads = range(self.num_heads) if self.test_head < 0 else [self.test_head]
        reg = self.regression_head if self.test_head < 0 else self.test_head
        logits, deltas = [], None
        for k in heads:
            scores_k, deltas_k = self._head_predictions(k, box_features)
            logits.append(scores_k)
            if k == reg:
                deltas = deltas_k
        del box_features
        scores = logits[0] if len(logits) == 1 else torch.stack(logits).mean(dim=0)
        pred_instances, _ = self.box_predictors[reg].inference((scores, deltas), proposals)
        return pred_instances
