"""EFL FCOS* on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml): Detectron2's lazy FCOS (center sampling, GIoU,
centerness, GN heads) as ``EFLFCOS`` on the pre-trained ResNet-18 with FrozenBN, P6 / P7
from P5, Equalized Focal Loss (gamma_b 2, s 8, alpha 0.25, the "num_pos" normaliser), LR 0.02 and
repeat-factor sampling at 0.125, with the tiny weights and schedule: all of them
taken from the tiny EFL RetinaNet (efl_retinanet_R_18_FPN_tiny.py), so the two detectors share
them. The EFL statistics are logged per LT-Shapes frequency group. ``model.efl.scale=0`` is focal
loss (the twin of fcos_R_18_FPN_tiny.yaml). Run with projects/lazy_train_net.py."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from libra_d2.modeling.meta_arch import EFLFCOS
from libra_d2.utils.compat import retinanet_head_norm

from .efl_retinanet_R_18_FPN_tiny import dataloader, lr_multiplier, optimizer, train
from .efl_retinanet_R_18_FPN_tiny import model as retinanet

model = model_zoo.get_config("common/models/fcos.py").model
model._target_ = EFLFCOS

# the tiny EFL RetinaNet's ResNet-18 (pre-trained, FrozenBN, res3-res5), FPN 64 channels; P6/P7
# from P5 (as FCOS), so top_block takes the FPN's channels
model.backbone.bottom_up = retinanet.backbone.bottom_up
model.backbone.out_channels = retinanet.backbone.out_channels
model.backbone.top_block.in_channels = retinanet.backbone.out_channels
model.head.input_shape = retinanet.head.input_shape
model.head.conv_dims = retinanet.head.conv_dims
# GroupNorm heads: Detectron2 0.6's RetinaNetHead (FCOSHead's base) cannot build GN itself
model.head.norm = L(retinanet_head_norm)(norm="GN")
model.num_classes = retinanet.num_classes
model.pixel_std = retinanet.pixel_std
model.test_score_thresh = 0.05
# the tiny EFL RetinaNet's EFL: loss, normaliser, frequency groups, logging
for key in ("efl", "loss_normalizer", "frequency_groups", "log_period"):
    model[key] = retinanet[key]

train.output_dir = "output/lt_shapes/lazy_efl_fcos_R_18_FPN_tiny"
