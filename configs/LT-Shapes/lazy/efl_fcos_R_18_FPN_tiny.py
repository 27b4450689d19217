"""EFL FCOS* on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml): Detectron2's lazy FCOS (center sampling, GIoU,
centerness, GN heads) as ``EFLFCOS`` on a ResNet-18 trained from scratch with BatchNorm, P6 / P7
from P5, Equalized Focal Loss (gamma_b 2, s 8, alpha 0.25, the "num_pos" normaliser), LR 0.02 and
repeat-factor sampling at 0.125, with the tiny schedule and its per-parameter clip. The EFL
statistics are logged per LT-Shapes frequency group. ``model.efl.scale=0`` is focal loss (the twin
of fcos_R_18_FPN_tiny.yaml). Run with projects/lazy_train_net.py."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet

from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.meta_arch import EFLFCOS
from libra_d2.utils.compat import retinanet_head_norm

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, optimizer, train

NUM_CLASSES = 32
model = model_zoo.get_config("common/models/fcos.py").model
model._target_ = EFLFCOS

# ResNet-18 from scratch with BatchNorm (res3-res5), FPN 64 channels, P6/P7 from P5 (as FCOS)
model.backbone.bottom_up = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
    stages=L(ResNet.make_default_stages)(depth=18, norm="BN"),
    out_features=["res3", "res4", "res5"],
    freeze_at=0,
)
model.backbone.out_channels = 64
model.backbone.top_block.in_channels = 64
model.head.input_shape = [ShapeSpec(channels=64)] * 5
model.head.conv_dims = [64, 64, 64, 64]
# GroupNorm heads: Detectron2 0.6's RetinaNetHead (FCOSHead's base) cannot build GN itself
model.head.norm = L(retinanet_head_norm)(norm="GN")
model.num_classes = NUM_CLASSES
model.pixel_std = [57.375, 57.120, 58.395]
model.test_score_thresh = 0.05
model.efl = dict(gamma_b=2.0, scale=8.0, alpha=0.25, use_focusing=True, use_weighting=True)
model.loss_normalizer = "num_pos"
model.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lt_shapes_train"], num_classes=NUM_CLASSES
)
model.log_period = 20

dataloader.train.repeat_threshold = 0.125  # RepeatFactorTrainingSampler, as the YAML
optimizer.lr = 0.02
train.output_dir = "output/lt_shapes/lazy_efl_fcos_R_18_FPN_tiny"
