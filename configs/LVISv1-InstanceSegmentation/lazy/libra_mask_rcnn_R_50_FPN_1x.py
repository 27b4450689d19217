"""Libra Mask R-CNN R-50-FPN on LVIS v1, 1x, RFS (t = 0.001) and Bucketed Class Re-weighting, as
a lazy config (the twin of configs/LVISv1-InstanceSegmentation/libra_mask_rcnn_R_50_FPN_1x.yaml):
the lazy LVIS Mask R-CNN of mask_rcnn_R_50_FPN_1x.py turned into Libra R-CNN by
``libra_d2.lazy.libra_rcnn`` (BFP, Libra's sampling, Balanced L1) with BCR's sigmoid classifier,
whose weights come from the training set's per-class image counts (LVIS' ``image_count``), and the
LVIS paper's output threshold 0.001. Building it needs those counts: Detectron2 main's LVIS
metadata has them, Detectron2 0.6 reads them from ``lvis_v1_train``'s json."""

from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_class_image_counts
from libra_d2.layers.class_reweighting import bucketed_class_weights
from libra_d2.lazy import libra_rcnn

from .mask_rcnn_R_50_FPN_1x import (
    NUM_CLASSES,
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
            dataset_names=["lvis_v1_train"], num_classes=NUM_CLASSES
        )
    ),
)
model.roi_heads.box_predictor.test_score_thresh = 0.001  # "output threshold 0.001"
train.output_dir = "output/lvis/lazy_libra_mask_rcnn_R_50_FPN_1x"
