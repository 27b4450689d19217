"""Libra RetinaNet + Equalized Focal Loss, R-50-FPN, COCO 2017, 1x, as a lazy config (the twin of
configs/COCO-Detection/libra_efl_retinanet_R_50_FPN_1x.yaml): the lazy Libra RetinaNet of
libra_retinanet_R_50_FPN_1x.py (BFP refined at P4, Balanced L1) as ``EFLRetinaNet`` with EFL
(gamma_b 2, s 8, alpha 0.25, the "num_pos" normaliser) as the classification loss. COCO has no
frequency groups: the statistics are logged over all classes. Run with
projects/lazy_train_net.py."""

from libra_d2.modeling.meta_arch import EFLRetinaNet

from .libra_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model._target_ = EFLRetinaNet
model.efl = dict(gamma_b=2.0, scale=8.0, alpha=0.25, use_focusing=True, use_weighting=True)
model.loss_normalizer = "num_pos"
model.iou_branch = False
model.frequency_groups = None
model.log_period = 20
train.output_dir = "output/coco/lazy_libra_efl_retinanet_R_50_FPN_1x"
