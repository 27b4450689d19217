"""Helpers that rewrite Detectron2 lazy configs (``LazyCall`` trees) into libra_d2 models."""

import copy
from typing import Sequence

__all__ = [
    "cascade_roi_heads",
    "libra_rcnn",
    "libra_rpn",
    "parallel_cascade_roi_heads",
    "parallel_roi_heads",
]


def libra_rcnn(model, cls_loss_type: str = "lgr_ce", bcr_class_weights=None, refine_level: int = 2):
    """Turn the lazy config of a Faster / Mask R-CNN FPN (``GeneralizedRCNN``) into Libra R-CNN,
    in place, as ``configs/Base-Libra-RCNN-FPN.yaml`` builds it: the FPN wrapped in a Balanced
    Feature Pyramid (non-local refine at ``refine_level``), ``LibraROIHeads`` with
    instance-balanced positives and IoU-balanced negatives (K = 3) through a ``MaxIoUMatcher``, and
    ``LibraFastRCNNOutputLayers`` with Balanced L1 and ``cls_loss_type`` ("bcr" takes its per-class
    weights, e.g. a lazy ``bucketed_class_weights``). The mask head is untouched. Returns
    ``model``."""
    from detectron2.config import LazyCall as L

    from .modeling.backbone import BalancedFeaturePyramid
    from .modeling.box_regression import DEFAULT_BALANCED_L1
    from .modeling.matcher import MaxIoUMatcher
    from .modeling.roi_heads import LibraFastRCNNOutputLayers, LibraROIHeads
    from .modeling.sampling import LibraSamplingConfig

    model.backbone = L(BalancedFeaturePyramid)(
        fpn=model.backbone, refine_level=refine_level, refine_type="non_local"
    )
    roi_heads = model.roi_heads
    roi_heads._target_ = LibraROIHeads
    roi_heads.sampling = L(LibraSamplingConfig)(
        pos_sampling="instance", neg_sampling="iou_balanced"
    )
    roi_heads.proposal_matcher._target_ = MaxIoUMatcher
    predictor = roi_heads.box_predictor
    predictor._target_ = LibraFastRCNNOutputLayers
    predictor.box_reg_loss_type = "balanced_l1"
    predictor.balanced_l1 = dict(DEFAULT_BALANCED_L1)
    predictor.cls_loss_type = cls_loss_type
    if bcr_class_weights is not None:
        predictor.bcr_class_weights = bcr_class_weights
    return model


def libra_rpn(model, refine_level: int = 2, iou_upper: float = 0.3):
    """Turn the lazy config of a Faster R-CNN FPN into Libra RPN, a proposal network, in place, as
    ``configs/COCO-Detection/libra_rpn_R_50_FPN_1x.yaml`` builds it: Detectron2's
    ``ProposalNetwork`` (no ROI heads) on a Balanced Feature Pyramid (non-local refine at
    ``refine_level``), and ``LibraRPN`` with instance-balanced positives, IoU-balanced negatives
    binned over ``[0, iou_upper)`` and Balanced L1. Returns ``model``."""
    from detectron2.config import LazyCall as L
    from detectron2.modeling import ProposalNetwork

    from .modeling.backbone import BalancedFeaturePyramid
    from .modeling.box_regression import DEFAULT_BALANCED_L1
    from .modeling.matcher import MaxIoUMatcher
    from .modeling.proposal_generator import LibraRPN
    from .modeling.sampling import LibraSamplingConfig

    model._target_ = ProposalNetwork
    for key in ("roi_heads", "input_format", "vis_period"):
        if key in model:
            del model[key]
    model.backbone = L(BalancedFeaturePyramid)(
        fpn=model.backbone, refine_level=refine_level, refine_type="non_local"
    )
    rpn = model.proposal_generator
    rpn._target_ = LibraRPN
    rpn.anchor_matcher._target_ = MaxIoUMatcher
    rpn.sampling = L(LibraSamplingConfig)(
        pos_sampling="instance", neg_sampling="iou_balanced", iou_upper=iou_upper
    )
    rpn.box_reg_loss_type = "balanced_l1"
    rpn.balanced_l1 = dict(DEFAULT_BALANCED_L1)
    return model


def parallel_roi_heads(
    roi_heads, positive_fractions: Sequence[float] = (0.5, 0.1), test_head: int = -1
):
    """Turn the lazy config of a ``StandardROIHeads`` (its ``box_head`` / ``box_predictor``) into
    ``ParallelROIHeads`` with one copy of the box head + predictor per positive fraction (PRM), in
    place: the predictors become ``LibraFastRCNNOutputLayers`` and the proposal matcher a
    ``MaxIoUMatcher`` (the Libra sampling API). Returns ``roi_heads``.
    ``roi_heads.test_head``: -1 ensemble, k module k alone."""
    from .modeling.matcher import MaxIoUMatcher
    from .modeling.roi_heads import LibraFastRCNNOutputLayers, ParallelROIHeads

    fractions = [float(f) for f in positive_fractions]
    box_head, box_predictor = roi_heads.box_head, roi_heads.box_predictor
    box_predictor._target_ = LibraFastRCNNOutputLayers
    # "${..num_classes}" in Detectron2's configs is relative to roi_heads: not valid inside a list
    box_predictor.num_classes = roi_heads.num_classes
    del roi_heads.box_head
    del roi_heads.box_predictor
    roi_heads._target_ = ParallelROIHeads
    roi_heads.proposal_matcher._target_ = MaxIoUMatcher
    roi_heads.box_heads = [copy.deepcopy(box_head) for _ in fractions]
    roi_heads.box_predictors = [copy.deepcopy(box_predictor) for _ in fractions]
    roi_heads.positive_fractions = fractions
    roi_heads.test_head = int(test_head)
    return roi_heads


def _cascade_stages(roi_heads):
    """Per stage of ``MODEL.ROI_BOX_CASCADE_HEAD``'s defaults (IoU 0.5, 0.6, 0.7; Detectron2's
    values, in one place): a copy of ``roi_heads``' box head, a copy of its box predictor with
    class-agnostic regression and the stage's box-regression weights, and a matcher at the stage's
    IoU. Returns the three lists."""
    from detectron2.config import LazyCall as L
    from detectron2.config import get_cfg
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher

    cascade = get_cfg().MODEL.ROI_BOX_CASCADE_HEAD
    box_head, box_predictor = roi_heads.box_head, roi_heads.box_predictor
    box_predictor.cls_agnostic_bbox_reg = True
    # "${..num_classes}" in Detectron2's configs is relative to roi_heads: not valid inside a list
    box_predictor.num_classes = roi_heads.num_classes
    heads, predictors, matchers = [], [], []
    for iou, weights in zip(cascade.IOUS, cascade.BBOX_REG_WEIGHTS):
        heads.append(copy.deepcopy(box_head))
        predictor = copy.deepcopy(box_predictor)
        predictor.box2box_transform = L(Box2BoxTransform)(weights=tuple(weights))
        predictors.append(predictor)
        matchers.append(
            L(Matcher)(thresholds=[iou], labels=[0, 1], allow_low_quality_matches=False)
        )
    return heads, predictors, matchers


def cascade_roi_heads(roi_heads):
    """Turn the lazy config of a ``StandardROIHeads`` into Detectron2's ``CascadeROIHeads``, in
    place, as its YAML configs build it: one copy of the box head and of the box predictor per
    stage, class-agnostic regression with the stage's box-regression weights, and one matcher per
    stage at its IoU (``MODEL.ROI_BOX_CASCADE_HEAD``'s defaults: 0.5, 0.6, 0.7). Returns
    ``roi_heads``."""
    from detectron2.modeling.roi_heads import CascadeROIHeads

    heads, predictors, matchers = _cascade_stages(roi_heads)
    del roi_heads.box_head
    del roi_heads.box_predictor
    del roi_heads.proposal_matcher
    roi_heads._target_ = CascadeROIHeads
    roi_heads.box_heads = heads
    roi_heads.box_predictors = predictors
    roi_heads.proposal_matchers = matchers
    return roi_heads


def parallel_cascade_roi_heads(
    roi_heads, positive_fractions: Sequence[float] = (0.5, 0.1), test_head: int = -1
):
    """Turn the lazy config of a ``StandardROIHeads`` into ``ParallelCascadeROIHeads`` (PRM in
    every Cascade R-CNN stage), in place, as its YAML configs build it: the stages of
    :func:`cascade_roi_heads` with one module per positive fraction in each, predictors
    ``LibraFastRCNNOutputLayers``, stage 0 matched by a ``MaxIoUMatcher`` (the Libra sampling API)
    and the later stages by the cascade's matchers. Returns ``roi_heads``."""
    from .modeling.matcher import MaxIoUMatcher
    from .modeling.roi_heads import LibraFastRCNNOutputLayers, ParallelCascadeROIHeads

    heads, predictors, matchers = _cascade_stages(roi_heads)
    for predictor in predictors:
        predictor._target_ = LibraFastRCNNOutputLayers
    fractions = [float(f) for f in positive_fractions]
    del roi_heads.box_head
    del roi_heads.box_predictor
    roi_heads._target_ = ParallelCascadeROIHeads
    roi_heads.proposal_matcher._target_ = MaxIoUMatcher
    roi_heads.box_heads = [copy.deepcopy(heads) for _ in fractions]
    roi_heads.box_predictors = [copy.deepcopy(predictors) for _ in fractions]
    roi_heads.stage_matchers = matchers[1:]
    roi_heads.positive_fractions = fractions
    roi_heads.test_head = int(test_head)
    return roi_heads
