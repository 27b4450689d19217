"""RGA and RGA + PRM on Cascade R-CNN (issue #16) with the protocol of experiments_rga_seeds.py
(its seeds and its whole-model gradient clip at a total norm of 10 instead of the tiny family's
per-parameter clip at 1.0, which would cancel RGA's scaling): the tiny Cascade R-CNN baseline, RGA
on all three stages (one lambda, 7 -> 1), and RGA with Parallel R-CNN Modules (1:1 and 1:9) in
every stage, each over the same three seeds.
Run: python dev/run_experiments.py projects/RGA_PRM/experiments_cascade_rga.py --jobs 2
"""

import os
import runpy

from libra_d2.checkpoint import TINY_FROM_SCRATCH

_RGA_SEEDS = runpy.run_path(os.path.join(os.path.dirname(__file__), "experiments_rga_seeds.py"))
BASE = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga.yaml"
RGA_PRM = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/cascade_rga_seeds"
RESULTS = "docs/results/cascade_rga_seeds"  # the committed copy, rewritten as rows finish
COLUMNS = _RGA_SEEDS["COLUMNS"]
ROWS = [
    ("{}, seed {}".format(name, seed), config, _RGA_SEEDS["FULL_MODEL_CLIP"] + ["SEED", str(seed)])
    for seed in _RGA_SEEDS["SEEDS"]
    for name, config in (
        ("cascade baseline", BASE),
        ("cascade RGA", RGA),
        ("cascade RGA + PRM", RGA_PRM),
    )
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
