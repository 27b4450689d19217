#!/usr/bin/env python
"""Generate the LT-Shapes dataset: a thin wrapper around ``python -m libra_d2.data.lt_shapes``.

It loads libra_d2/data/lt_shapes.py directly, without importing the libra_d2 package (whose
__init__ imports Detectron2 and torch), so it starts fast and works without Detectron2.

Example: python dev/generate_lt_shapes.py --root datasets/lt_shapes [--preset tiny] [--overwrite]
"""

import importlib.util
import os
import sys

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "libra_d2", "data", "lt_shapes.py")


def _load():
    spec = importlib.util.spec_from_file_location("_lt_shapes_standalone", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(_load().main())
