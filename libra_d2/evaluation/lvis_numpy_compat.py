"""Make the ``lvis`` evaluation library work on current NumPy.

lvis 0.5.3 (the newest release) uses ``np.float`` in ``LVISEval.accumulate``; NumPy >= 1.24 removed
that alias, so every LVIS evaluation (including Detectron2's ``LVISEvaluator``, on any Detectron2
version) fails with AttributeError. Instead of touching NumPy globally, the ``lvis.eval`` module gets
its own view of NumPy in which the removed aliases mean what they always meant (the builtins).
"""
import types

import numpy as np

_REMOVED_ALIASES = {"float": float, "int": int, "bool": bool, "object": object, "str": str}


class _NumpyWithAliases(types.ModuleType):
    """A stand-in for the ``numpy`` module: attribute reads fall through to NumPy itself."""

    def __init__(self):
        super().__init__("numpy")
        self.__dict__.update(_REMOVED_ALIASES)

    def __getattr__(self, name):
        return getattr(np, name)


def patch_lvis_numpy_aliases() -> bool:
    """Give ``lvis.eval`` the removed NumPy aliases. Returns True if a patch was applied."""
    try:
        import lvis.eval as lvis_eval
    except ImportError:
        return False
    if all(hasattr(lvis_eval.np, k) for k in _REMOVED_ALIASES):
        return False  # old NumPy, or already patched
    lvis_eval.np = _NumpyWithAliases()
    return True
