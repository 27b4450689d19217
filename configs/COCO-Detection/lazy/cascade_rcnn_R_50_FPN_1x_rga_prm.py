"""Cascade R-CNN R-50-FPN, COCO 2017, 1x, with R-CNN Gradient Annealing and Parallel R-CNN Modules
in every stage, as a lazy config (the twin of
configs/COCO-Detection/cascade_rcnn_R_50_FPN_1x_rga_prm.yaml): the lazy Faster R-CNN R-50-FPN 1x
with RGA of faster_rcnn_R_50_FPN_1x_rga.py, its ROI heads turned into
``ParallelCascadeROIHeads`` (``libra_d2.lazy.parallel_cascade_roi_heads``), and 2000 RPN proposals
in training. Paper (Table 2): 40.5 -> 41.7 box AP."""

from libra_d2.lazy import parallel_cascade_roi_heads

from .faster_rcnn_R_50_FPN_1x_rga import dataloader, lr_multiplier, model, optimizer, train

# 1:1 and 1:9 in every stage; test_head -1: ensemble, k: module k alone
parallel_cascade_roi_heads(model.roi_heads, positive_fractions=[0.5, 0.1], test_head=-1)
model.proposal_generator.post_nms_topk = (2000, 1000)
train.output_dir = "output/coco/lazy_cascade_rcnn_R_50_FPN_1x_rga_prm"
