#!/usr/bin/env python
"""Generate the LT-Shapes dataset (as Detectron2's ``datasets/prepare_*.py`` prepare theirs).

    python datasets/prepare_lt_shapes.py --root datasets/lt_shapes [--preset tiny] [--overwrite]

The same as ``python -m libra_d2.data.datasets.lt_shapes_generate``; ``--help`` lists the options.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

from libra_d2.data.datasets.lt_shapes_generate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
