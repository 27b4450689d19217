"""Tiny Faster R-CNN on LT-Shapes with R-CNN Gradient Annealing and Parallel R-CNN Modules, as a
lazy config (twin of configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml): the plain tiny
lazy config with its box head + predictor replicated into one module per positive fraction.

RGA is a training hook, not a model part: ``train.rga`` holds GradientAnnealing's arguments and is
read by the launcher (``libra_d2.engine.gradient_annealing.gradient_annealing_from_train_cfg``).
Overrides: ``train.rga.enabled=False``, ``train.rga.constant=True``, ``model.roi_heads.test_head=0``.
"""
import copy

from libra_d2.engine.gradient_annealing import DEFAULT_RCNN_MODULES
from libra_d2.modeling.matcher import MaxIoUMatcher
from libra_d2.modeling.roi_heads import LibraFastRCNNOutputLayers, ParallelROIHeads

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

_POSITIVE_FRACTIONS = [0.5, 0.1]  # 1:1 and 1:9

_box_head, _box_predictor = model.roi_heads.box_head, model.roi_heads.box_predictor
_box_predictor._target_ = LibraFastRCNNOutputLayers
# "${..num_classes}" in Detectron2's config is relative to roi_heads: not valid inside a list
_box_predictor.num_classes = model.roi_heads.num_classes
del model.roi_heads.box_head
del model.roi_heads.box_predictor
model.roi_heads._target_ = ParallelROIHeads
model.roi_heads.proposal_matcher._target_ = MaxIoUMatcher  # reports max IoUs (Libra sampling API)
model.roi_heads.box_heads = [copy.deepcopy(_box_head) for _ in _POSITIVE_FRACTIONS]
model.roi_heads.box_predictors = [copy.deepcopy(_box_predictor) for _ in _POSITIVE_FRACTIONS]
model.roi_heads.positive_fractions = _POSITIVE_FRACTIONS
model.roi_heads.test_head = -1  # -1: ensemble; k: module k alone

train.rga = dict(
    enabled=True,
    lambda0=7.0,
    end_iter=None,  # None: train.max_iter
    constant=False,
    modules=list(DEFAULT_RCNN_MODULES),
    include_mask_head=False,
)
train.output_dir = "output/lt_shapes/lazy_faster_rcnn_R_18_FPN_tiny_rga_prm"
