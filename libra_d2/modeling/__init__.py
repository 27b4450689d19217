"""libra_d2 models. Importing this registers every component in Detectron2's registries."""

from . import backbone  # noqa: F401  (BACKBONE_REGISTRY: BFP, PAFPN, Balanced PAFPN)
from . import meta_arch  # noqa: F401  (META_ARCH_REGISTRY: LibraRetinaNet)
from . import proposal_generator  # noqa: F401  (PROPOSAL_GENERATOR_REGISTRY: LibraRPN)
from . import roi_heads  # noqa: F401  (ROI_HEADS_REGISTRY: LibraROIHeads)
from .class_statistics import ClassGradientRatio, ClassStatistics, MeanClassScore
from .matcher import MATCHER_REGISTRY, build_matcher

__all__ = [
    "ClassGradientRatio",
    "ClassStatistics",
    "MATCHER_REGISTRY",
    "MeanClassScore",
    "build_matcher",
]
