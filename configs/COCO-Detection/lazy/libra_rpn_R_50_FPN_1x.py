"""Libra RPN R-50-FPN, COCO 2017, 1x, proposals only, as a lazy config (the twin of
configs/COCO-Detection/libra_rpn_R_50_FPN_1x.yaml, whose comments give the reading of the paper):
the lazy Faster R-CNN R-50-FPN 1x turned into a proposal network by ``libra_d2.lazy.libra_rpn``
(BFP refined at P4, IoU-balanced negatives over [0, 0.3), instance-balanced positives, Balanced
L1), 2000 proposals per test image, evaluated by Detectron2's box-proposal AR. Paper (journal,
Table 2): AR100 / AR1000 52.1 / 62.5 vs 42.5 / 57.1."""

from libra_d2.lazy import libra_rpn

from .faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

libra_rpn(model, refine_level=2, iou_upper=0.3)
model.proposal_generator.post_nms_topk = (1000, 2000)
train.output_dir = "output/coco/lazy_libra_rpn_R_50_FPN_1x"
