"""Libra Faster R-CNN on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml): the plain tiny lazy config with the
backbone wrapped in a Balanced Feature Pyramid and Libra's ROI heads and box predictor."""

from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_class_image_counts
from libra_d2.layers.class_reweighting import bucketed_class_weights
from libra_d2.modeling.backbone import BalancedFeaturePyramid
from libra_d2.modeling.matcher import MaxIoUMatcher
from libra_d2.modeling.roi_heads import LibraFastRCNNOutputLayers, LibraROIHeads
from libra_d2.modeling.sampling import LibraSamplingConfig

from .faster_rcnn_R_18_FPN_tiny import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

model.backbone = L(BalancedFeaturePyramid)(
    fpn=model.backbone, refine_level=2, refine_type="non_local"
)
model.roi_heads._target_ = LibraROIHeads
model.roi_heads.sampling = L(LibraSamplingConfig)(
    pos_sampling="instance", neg_sampling="iou_balanced"
)
model.roi_heads.proposal_matcher._target_ = MaxIoUMatcher
model.roi_heads.box_predictor._target_ = LibraFastRCNNOutputLayers
model.roi_heads.box_predictor.box_reg_loss_type = "balanced_l1"
model.roi_heads.box_predictor.balanced_l1 = dict(alpha=0.5, gamma=1.5, beta=1.0)
model.roi_heads.box_predictor.cls_loss_type = "bcr"
model.roi_heads.box_predictor.bcr_class_weights = L(bucketed_class_weights)(
    frequencies=L(training_class_image_counts)(dataset_names=["lt_shapes_train"], num_classes=32)
)
train.output_dir = "output/lt_shapes/lazy_libra_faster_rcnn_R_18_FPN_tiny"
