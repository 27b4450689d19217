"""ROI heads. Importing this registers them in Detectron2's ROI_HEADS_REGISTRY."""
from .fast_rcnn import CLS_LOSS_TYPES, LibraFastRCNNOutputLayers, training_class_image_counts
from .libra_roi_heads import LibraROIHeads
from .parallel_roi_heads import ParallelROIHeads

__all__ = [
    "CLS_LOSS_TYPES",
    "LibraFastRCNNOutputLayers",
    "LibraROIHeads",
    "ParallelROIHeads",
    "training_class_image_counts",
]
