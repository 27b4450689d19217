"""Tiny Faster R-CNN on LT-Shapes with R-CNN Gradient Annealing and Parallel R-CNN Modules, as a
lazy config (twin of configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml): the plain tiny
lazy config with its box head + predictor replicated into one module per positive fraction.

RGA: ``train.hooks`` (below). Evaluate one module alone: ``model.roi_heads.test_head=0``.
"""

from detectron2.config import LazyCall as L

from libra_d2.engine.gradient_annealing import GradientAnnealing
from libra_d2.lazy import parallel_roi_heads

from .faster_rcnn_R_18_FPN_tiny import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

# 1:1 and 1:9; test_head -1: ensemble, k: module k alone
parallel_roi_heads(model.roi_heads, positive_fractions=[0.5, 0.1], test_head=-1)

# RGA is a training hook, not a model part: train.hooks lists the hooks the launcher instantiates.
# GradientAnnealing's defaults (its constructor) are the paper's: lambda 7 -> 1 over train.max_iter
# on the box head and predictor. Overrides: train.hooks.0.constant=True; "train.hooks=[]" (off).
train.hooks = [L(GradientAnnealing)(lambda0=7.0)]
# the whole-model clip of the YAML twin (why: its comment)
train.clip_gradients = dict(enabled=True, clip_type="full_model", clip_value=10.0, norm_type=2.0)
train.output_dir = "output/lt_shapes/lazy_faster_rcnn_R_18_FPN_tiny_rga_prm"
