"""Libra RetinaNet + EFL on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/libra_efl_retinanet_R_18_FPN_tiny.yaml): the lazy tiny EFL RetinaNet
(efl_retinanet_R_18_FPN_tiny.py) with Libra RetinaNet's switches, the backbone wrapped in a
Balanced Feature Pyramid refined at P4 and Balanced L1 (beta 0.11, the reference's form) as the
box loss. ``model.efl.scale=0`` is Libra RetinaNet with focal loss. Run with
projects/lazy_train_net.py."""

from detectron2.config import LazyCall as L

from libra_d2.modeling.backbone import BalancedFeaturePyramid

from .efl_retinanet_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone = L(BalancedFeaturePyramid)(
    fpn=model.backbone, refine_level=1, refine_type="non_local"
)
model.box_reg_loss_type = "balanced_l1"
model.balanced_l1 = dict(alpha=0.5, gamma=1.5, beta=0.11, form="reference")
train.output_dir = "output/lt_shapes/lazy_libra_efl_retinanet_R_18_FPN_tiny"
