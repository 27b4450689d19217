"""Plain RetinaNet on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/retinanet_R_18_FPN_tiny.yaml): Detectron2's lazy RetinaNet (P3-P7) on the
pre-trained ResNet-18 with FrozenBN (stem and res2 frozen), a 64-channel FPN with P6 / P7 from
res5, the tiny family's anchors (halved) and the weights, data and schedule of
faster_rcnn_R_18_FPN_tiny.py at LR 0.01. The tiny EFL and Libra RetinaNet lazy configs are built
on it."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, optimizer, train  # noqa: F401

NUM_CLASSES = 32
model = model_zoo.get_config("common/models/retinanet.py").model

# the pre-trained ResNet-18 (res3-res5) with FrozenBN, FPN 64 channels, P6/P7 from res5 (512)
model.backbone.bottom_up = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
    stages=L(ResNet.make_default_stages)(depth=18, norm="FrozenBN"),
    out_features=["res3", "res4", "res5"],
    freeze_at=2,
)
model.backbone.out_channels = 64
model.backbone.top_block.in_channels = 512
model.head.input_shape = [ShapeSpec(channels=64)] * 5
model.head.conv_dims = [64, 64, 64, 64]
# [x, x * 2**(1/3), x * 2**(2/3)] for x in 16..256, as the YAML
model.anchor_generator.sizes = [
    [x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [16, 32, 64, 128, 256]
]
model.num_classes = NUM_CLASSES
model.smooth_l1_beta = 0.0
model.pixel_std = [57.375, 57.120, 58.395]

optimizer.lr = 0.01
train.output_dir = "output/lt_shapes/lazy_retinanet_R_18_FPN_tiny"
