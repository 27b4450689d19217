from .build import SUPPORTED_EVALUATOR_TYPES, build_evaluator
from .per_class_ap import PerClassAPReport
from ..utils.compat import patch_lvis_numpy_aliases

patch_lvis_numpy_aliases()  # lvis on current NumPy (see libra_d2.utils.compat)

__all__ = ["PerClassAPReport", "SUPPORTED_EVALUATOR_TYPES", "build_evaluator"]
