"""ROI heads. Importing this registers them in Detectron2's ROI_HEADS_REGISTRY."""

from .fast_rcnn import CLS_LOSS_TYPES, LibraFastRCNNOutputLayers
from .libra_roi_heads import LibraROIHeads
from .loce_roi_heads import LOCEFastRCNNOutputLayers, LOCEROIHeads, MemoryBatch
from .parallel_cascade_roi_heads import ParallelCascadeROIHeads
from .parallel_roi_heads import ParallelROIHeads

__all__ = [
    "CLS_LOSS_TYPES",
    "LibraFastRCNNOutputLayers",
    "LibraROIHeads",
    "LOCEFastRCNNOutputLayers",
    "LOCEROIHeads",
    "MemoryBatch",
    "ParallelCascadeROIHeads",
    "ParallelROIHeads",
]
