"""EFL RetinaNet on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml): RetinaNet (P3-P7) on a ResNet-18 trained from
scratch with BatchNorm, GroupNorm heads, Equalized Focal Loss (gamma_b 2, s 8, alpha 0.25, the
"num_pos" normaliser), LR 0.02, the tiny schedule with per-parameter gradient-norm clipping
(``train.clip_gradients``, applied by the launcher) and repeat-factor sampling at threshold 0.125
(``dataloader.train.repeat_threshold``; ``0`` turns it off). The EFL statistics are logged per
LT-Shapes frequency group (``frequency_groups`` from the dataset's metadata, as the YAML's
``from_config``). ``model.efl.scale=0`` is focal loss. Run with projects/lazy_train_net.py."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet

from libra_d2.modeling.meta_arch import EFLRetinaNet
from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.meta_arch.efl_retinanet import EFLRetinaNetHead
from libra_d2.utils.compat import retinanet_head_norm

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, optimizer, train  # noqa: F401

NUM_CLASSES = 32
model = model_zoo.get_config("common/models/retinanet.py").model
model._target_ = EFLRetinaNet

# ResNet-18 from scratch with BatchNorm (res3-res5), FPN 64 channels, P6/P7 from res5 (512 channels)
model.backbone.bottom_up = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
    stages=L(ResNet.make_default_stages)(depth=18, norm="BN"),
    out_features=["res3", "res4", "res5"],
    freeze_at=0,
)
model.backbone.out_channels = 64
model.backbone.top_block.in_channels = 512
# GroupNorm heads: Detectron2 0.6's RetinaNetHead cannot build GN itself (retinanet_head_norm)
model.head = L(EFLRetinaNetHead)(
    input_shape=[ShapeSpec(channels=64)] * 5,
    num_classes="${..num_classes}",
    conv_dims=[64, 64, 64, 64],
    norm=L(retinanet_head_norm)(norm="GN"),
    prior_prob=0.01,
    num_anchors=9,
    iou_branch=False,
)
# [x, x * 2**(1/3), x * 2**(2/3)] for x in 16..256, as the YAML
model.anchor_generator.sizes = [
    [x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [16, 32, 64, 128, 256]
]
model.num_classes = NUM_CLASSES
model.smooth_l1_beta = 0.0
model.pixel_std = [57.375, 57.120, 58.395]
model.efl = dict(gamma_b=2.0, scale=8.0, alpha=0.25, use_focusing=True, use_weighting=True)
model.loss_normalizer = "num_pos"
model.iou_branch = False
model.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lt_shapes_train"], num_classes=NUM_CLASSES
)
model.log_period = 20

dataloader.train.repeat_threshold = 0.125  # RepeatFactorTrainingSampler, as the YAML
optimizer.lr = 0.02
train.output_dir = "output/lt_shapes/lazy_efl_retinanet_R_18_FPN_tiny"
