"""The LT-Shapes table of projects/RGA_PRM/README.md over three seeds, on the tiny family's recipe
(the pre-trained ResNet-18 with FrozenBN and no gradient clip, so nothing caps RGA's scaling;
``make pretrained`` first): the tiny Faster R-CNN baseline, R-CNN Gradient Annealing (constant
lambda = 7 and annealed 7 -> 1), Parallel R-CNN Modules (the ensemble, and each module of the same
model evaluated alone with MODEL.PRM.TEST_HEAD, an inference option), and RGA + PRM. Each setting's
mean and spread, and its paired difference from the baseline.

    python dev/run_experiments.py projects/RGA_PRM/experiments.py --jobs 2

The baseline's seeds are those of the Libra R-CNN table (the tiny-recipe table's checkpoints),
evaluated where they exist (``reuse``). Cascade R-CNN: experiments_cascade.py.
"""

import os
import runpy

_LIBRA = runpy.run_path(
    os.path.join(os.path.dirname(__file__), "..", "LibraRCNN", "experiments.py")
)
BASE = _LIBRA["BASE"]
RGA = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga.yaml"
PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
RGA_PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/rga_prm_seeds"
RESULTS = "docs/results/rga_prm_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 13.0
REFERENCE = "baseline"
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
ENSEMBLE = OUTPUT_ROOT + "/prm_ensemble_seed_{seed}/model_final.pth"
SETTINGS = [
    ("baseline", BASE, [], {"reuse": _LIBRA["TINY_RECIPE_BASELINE"]}),
    ("constant lambda 7", RGA, ["MODEL.RGA.CONSTANT", "True"]),
    ("RGA (lambda 7 to 1)", RGA, []),
    ("PRM ensemble", PRM, []),
    ("PRM module 0.5 alone", PRM, ["MODEL.PRM.TEST_HEAD", "0"], {"weights": ENSEMBLE}),
    ("PRM module 0.1 alone", PRM, ["MODEL.PRM.TEST_HEAD", "1"], {"weights": ENSEMBLE}),
    ("RGA + PRM", RGA_PRM, []),
]
