"""RGA and RGA + PRM on Cascade R-CNN over three seeds, on the tiny family's recipe (the
pre-trained ResNet-18 with FrozenBN; ``make pretrained`` first): the tiny Cascade R-CNN baseline
without a clip and with the whole-model clip at 10 that the RGA configs carry, RGA on all three
stages (one lambda, 7 -> 1 over the run, and over its first 100 iterations only), and RGA with
Parallel R-CNN Modules (1:1 and 1:9) in every stage.
Each setting's mean and spread; the RGA rows are paired with the clipped baseline.

    python dev/run_experiments.py projects/RGA_PRM/experiments_cascade.py --jobs 2
"""

import os
import runpy

BASE = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga.yaml"
RGA_PRM = "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/cascade_rga_prm_seeds"
RESULTS = "docs/results/cascade_rga_prm_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 16.0
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
# the clip of the RGA configs, as overrides for the baseline (experiments.py's)
WHOLE_MODEL_CLIP = runpy.run_path(os.path.join(os.path.dirname(__file__), "experiments.py"))[
    "WHOLE_MODEL_CLIP"
]
CLIPPED_BASELINE = "cascade baseline, whole-model clip 10"
SETTINGS = [
    ("cascade baseline", BASE, []),
    (CLIPPED_BASELINE, BASE, WHOLE_MODEL_CLIP),
    ("cascade RGA", RGA, []),
    ("cascade RGA + PRM", RGA_PRM, []),
    # the schedule as RGA's suspect, as in experiments.py: lambda back at 1 by iteration 100
    ("cascade RGA, lambda 7 to 1 by iteration 100", RGA, ["MODEL.RGA.END_ITER", "100"]),
]
REFERENCES = {
    name: CLIPPED_BASELINE
    for name in ("cascade RGA", "cascade RGA + PRM", "cascade RGA, lambda 7 to 1 by iteration 100")
}
