"""ROI heads. Importing this registers them in Detectron2's ROI_HEADS_REGISTRY."""
from .fast_rcnn import CLS_LOSS_TYPES, LibraFastRCNNOutputLayers, training_class_image_counts
from .libra_roi_heads import LibraROIHeads

__all__ = [
    "CLS_LOSS_TYPES",
    "LibraFastRCNNOutputLayers",
    "LibraROIHeads",
    "training_class_image_counts",
]
