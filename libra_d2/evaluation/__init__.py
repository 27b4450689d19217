from .build import SUPPORTED_EVALUATOR_TYPES, build_evaluator
from .lvis_numpy_compat import patch_lvis_numpy_aliases

patch_lvis_numpy_aliases()

__all__ = ["build_evaluator", "patch_lvis_numpy_aliases", "SUPPORTED_EVALUATOR_TYPES"]
