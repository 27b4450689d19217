"""The first LT-Shapes table of projects/RGA_PRM/README.md, single runs from scratch (the tiny
recipe before issue #15, whose per-parameter clip cancels RGA): the tiny Faster R-CNN baseline,
R-CNN Gradient Annealing (constant lambda = 7 and annealed 7 -> 1), Parallel R-CNN Modules (each
module evaluated alone and the ensemble), and RGA + PRM. The 3-seed tables of the pre-trained recipe
are experiments.py (Faster R-CNN) and experiments_cascade.py. Run: python dev/run_experiments.py
projects/RGA_PRM/experiments_from_scratch.py

The PRM rows first trained with independent per-module sampling (MODEL.PRM.NESTED_SAMPLING
False, the only mode then); the "nested sampling" rows train the default, cheaper mode (see
parallel_roi_heads.py). The single-module PRM rows evaluate the ensemble row's checkpoint with
MODEL.PRM.TEST_HEAD set (an inference option), so PRM is trained once.
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga.yaml"
PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
RGA_PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/rga_prm"
COLUMNS = ("AP", "AP50", "AP75")
ENSEMBLE = OUTPUT_ROOT + "/prm_ensemble/model_final.pth"
INDEPENDENT = ["MODEL.PRM.NESTED_SAMPLING", "False"]
ROWS = [
    # the tiny baseline is deterministic: evaluate the Libra R-CNN table's baseline checkpoint
    ("baseline", BASE, [], {"weights": "output/libra_rcnn/baseline/model_final.pth"}),
    ("constant lambda 7", RGA, ["MODEL.RGA.CONSTANT", "True"]),
    ("RGA (lambda 7 to 1)", RGA, []),
    ("PRM ensemble", PRM, INDEPENDENT),
    # each module of the same PRM model evaluated alone (an inference option)
    (
        "PRM module 0.5 alone",
        PRM,
        ["MODEL.PRM.TEST_HEAD", "0", *INDEPENDENT],
        {"weights": ENSEMBLE},
    ),
    (
        "PRM module 0.1 alone",
        PRM,
        ["MODEL.PRM.TEST_HEAD", "1", *INDEPENDENT],
        {"weights": ENSEMBLE},
    ),
    ("RGA + PRM", RGA_PRM, INDEPENDENT),
    # the default sampling mode: the modules' samples nested (cheaper; correlated samples)
    ("PRM ensemble, nested sampling", PRM, []),
    ("RGA + PRM, nested sampling", RGA_PRM, []),
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
