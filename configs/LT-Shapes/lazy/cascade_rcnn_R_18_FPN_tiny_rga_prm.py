"""Tiny Cascade R-CNN on LT-Shapes with R-CNN Gradient Annealing and Parallel R-CNN Modules in
every stage, as a lazy config (twin of configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga_prm.yaml):
the tiny lazy RGA Cascade R-CNN's hooks and schedule, with the plain tiny model's ROI heads turned
into ``ParallelCascadeROIHeads`` (``libra_d2.lazy.parallel_cascade_roi_heads``)."""

from libra_d2.lazy import parallel_cascade_roi_heads

from .cascade_rcnn_R_18_FPN_tiny_rga import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_R_18_FPN_tiny import model

# 1:1 and 1:9 in every stage; test_head -1: ensemble, k: module k alone
parallel_cascade_roi_heads(model.roi_heads, positive_fractions=[0.5, 0.1], test_head=-1)
train.output_dir = "output/lt_shapes/lazy_cascade_rcnn_R_18_FPN_tiny_rga_prm"
