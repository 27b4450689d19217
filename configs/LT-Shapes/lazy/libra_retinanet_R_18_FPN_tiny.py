"""Libra RetinaNet on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml): the plain tiny lazy RetinaNet as
``LibraRetinaNet``, its FPN wrapped in a Balanced Feature Pyramid refined at P4 and Balanced L1
(beta 0.11, the reference's form) as the box loss. Run with projects/lazy_train_net.py."""

from detectron2.config import LazyCall as L

from libra_d2.modeling.backbone import BalancedFeaturePyramid
from libra_d2.modeling.meta_arch import LibraRetinaNet

from .retinanet_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train

model._target_ = LibraRetinaNet
# BFP on P3-P7; index 1 (from P3) = P4, as the reference Libra RetinaNet
model.backbone = L(BalancedFeaturePyramid)(
    fpn=model.backbone, refine_level=1, refine_type="non_local"
)
model.box_reg_loss_type = "balanced_l1"
model.balanced_l1 = dict(alpha=0.5, gamma=1.5, beta=0.11, form="reference")
train.output_dir = "output/lt_shapes/lazy_libra_retinanet_R_18_FPN_tiny"
