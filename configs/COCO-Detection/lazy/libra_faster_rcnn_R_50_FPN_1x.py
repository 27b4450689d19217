"""Libra Faster R-CNN R-50-FPN, COCO 2017, 1x, as a lazy config (the twin of
configs/COCO-Detection/libra_faster_rcnn_R_50_FPN_1x.yaml): the lazy Faster R-CNN R-50-FPN 1x
turned into Libra R-CNN (journal version) by ``libra_d2.lazy.libra_rcnn``: BFP with non-local
refine at P4, IoU-balanced negatives (K = 3) and instance-balanced positives, Balanced L1 and
LGR-CE. Paper (journal, Table 1/2): 39.0 box AP."""

from libra_d2.lazy import libra_rcnn

from .faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

libra_rcnn(model, cls_loss_type="lgr_ce")
train.output_dir = "output/coco/lazy_libra_faster_rcnn_R_50_FPN_1x"
