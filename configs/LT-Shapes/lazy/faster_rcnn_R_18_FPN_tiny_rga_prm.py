"""Tiny Faster R-CNN on LT-Shapes with R-CNN Gradient Annealing and Parallel R-CNN Modules, as a
lazy config (twin of configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml): the plain tiny
lazy config with its box head + predictor replicated into one module per positive fraction.

RGA is a training hook, not a model part: ``train.rga`` holds GradientAnnealing's arguments and is
read by the launcher (``libra_d2.engine.gradient_annealing.gradient_annealing_from_train_cfg``).
Overrides: ``train.rga.enabled=False``, ``train.rga.constant=True``, ``model.roi_heads.test_head=0``.
"""
from libra_d2.engine.gradient_annealing import DEFAULT_RCNN_MODULES
from libra_d2.lazy import parallel_roi_heads

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# 1:1 and 1:9; test_head -1: ensemble, k: module k alone
parallel_roi_heads(model.roi_heads, positive_fractions=[0.5, 0.1], test_head=-1)

train.rga = dict(
    enabled=True,
    lambda0=7.0,
    end_iter=None,  # None: train.max_iter
    constant=False,
    modules=list(DEFAULT_RCNN_MODULES),
    include_mask_head=False,
)
train.output_dir = "output/lt_shapes/lazy_faster_rcnn_R_18_FPN_tiny_rga_prm"
