from .build import SUPPORTED_EVALUATOR_TYPES, build_evaluator
from ..utils.compat import patch_lvis_numpy_aliases

patch_lvis_numpy_aliases()  # lvis on current NumPy (see libra_d2.utils.compat)

__all__ = ["build_evaluator", "SUPPORTED_EVALUATOR_TYPES"]
