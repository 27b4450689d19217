"""RGA and RGA + PRM on Cascade R-CNN over three seeds, on the tiny family's recipe (the
pre-trained ResNet-18 with FrozenBN and no gradient clip; ``make pretrained`` first): the tiny
Cascade R-CNN baseline, RGA on all three stages (one lambda, 7 -> 1), and RGA with Parallel R-CNN
Modules (1:1 and 1:9) in every stage. Each setting's mean and spread, and its paired difference
from the Cascade baseline.

    python dev/run_experiments.py projects/RGA_PRM/experiments_cascade.py --jobs 2
"""

BASE = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga.yaml"
RGA_PRM = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/cascade_rga_prm_seeds"
RESULTS = "docs/results/cascade_rga_prm_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 16.0
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
SETTINGS = [
    ("cascade baseline", BASE, []),
    ("cascade RGA", RGA, []),
    ("cascade RGA + PRM", RGA_PRM, []),
]
