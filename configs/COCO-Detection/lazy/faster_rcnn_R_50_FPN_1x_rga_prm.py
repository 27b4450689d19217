"""Faster R-CNN R-50-FPN, COCO 2017, 1x, with R-CNN Gradient Annealing and Parallel R-CNN Modules,
as a lazy config (the twin of configs/COCO-Detection/faster_rcnn_R_50_FPN_1x_rga_prm.yaml): two box
heads sampled 1:1 and 1:9; test: averaged logits, boxes of the 1:1 head.
Paper (Table 2, their re-implementation): 1x: 36.1 -> 38.1 box AP."""

from libra_d2.lazy import parallel_roi_heads

from .faster_rcnn_R_50_FPN_1x_rga import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

parallel_roi_heads(model.roi_heads, positive_fractions=[0.5, 0.1], test_head=-1)
train.output_dir = "output/coco/lazy_faster_rcnn_R_50_FPN_1x_rga_prm"
