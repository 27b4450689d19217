"""Libra Mask R-CNN on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/libra_mask_rcnn_R_18_FPN_tiny.yaml): the tiny lazy Libra Faster R-CNN with
Detectron2's mask branch (4 convs of 64 channels on 14 x 14 RoIs) and instance masks in the
training data."""

from detectron2 import model_zoo
from detectron2.layers import ShapeSpec

from .libra_faster_rcnn_R_18_FPN_tiny import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

mask_rcnn = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model.roi_heads
model.roi_heads.mask_in_features = mask_rcnn.mask_in_features
model.roi_heads.mask_pooler = mask_rcnn.mask_pooler
model.roi_heads.mask_head = mask_rcnn.mask_head
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=64, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [64] * 5  # 4 convs and the deconv (ROI_MASK_HEAD.CONV_DIM)
# "${..num_classes}" is relative to the mask head's parent in the loaded config
model.roi_heads.mask_head.num_classes = model.roi_heads.num_classes
dataloader.train.mapper.use_instance_mask = True
train.output_dir = "output/lt_shapes/lazy_libra_mask_rcnn_R_18_FPN_tiny"
