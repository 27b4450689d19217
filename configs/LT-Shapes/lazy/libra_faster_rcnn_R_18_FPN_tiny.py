"""Libra Faster R-CNN on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml): the plain tiny lazy config turned into
Libra R-CNN by ``libra_d2.lazy.libra_rcnn`` (BFP, Libra's sampling, Balanced L1), with Bucketed
Class Re-weighting from the training set's class frequencies as the classification loss."""

from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_class_image_counts
from libra_d2.layers.class_reweighting import bucketed_class_weights
from libra_d2.lazy import libra_rcnn

from .faster_rcnn_R_18_FPN_tiny import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

libra_rcnn(
    model,
    cls_loss_type="bcr",
    bcr_class_weights=L(bucketed_class_weights)(
        frequencies=L(training_class_image_counts)(
            dataset_names=["lt_shapes_train"], num_classes=32
        )
    ),
)
train.output_dir = "output/lt_shapes/lazy_libra_faster_rcnn_R_18_FPN_tiny"
