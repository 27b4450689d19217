"""Cascade R-CNN R-50-FPN, COCO 2017, 1x, with R-CNN Gradient Annealing on every stage, as a lazy
config (the twin of configs/COCO-Detection/cascade_rcnn_R_50_FPN_1x_rga.yaml): the lazy Faster
R-CNN R-50-FPN 1x of faster_rcnn_R_50_FPN_1x_rga.py with Detectron2's three-stage
``CascadeROIHeads`` (``libra_d2.lazy.cascade_roi_heads``) and 2000 RPN proposals in training.
Paper (Table 2): 40.5 -> 41.1 box AP."""

from libra_d2.lazy import cascade_roi_heads

from .faster_rcnn_R_50_FPN_1x_rga import dataloader, lr_multiplier, model, optimizer, train

cascade_roi_heads(model.roi_heads)
model.proposal_generator.post_nms_topk = (2000, 1000)
train.output_dir = "output/coco/lazy_cascade_rcnn_R_50_FPN_1x_rga"
