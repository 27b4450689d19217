"""The first LT-Shapes ablation of projects/EFL/README.md, single runs from scratch (the tiny
recipe before issue #15): EFL's two factors on the tiny RetinaNet, the scale s on the tiny improved
baseline (s = 0 is the improved baseline with focal loss), and Libra RetinaNet + EFL. The 3-seed
table of the pre-trained recipe, on the dense variant, is experiments.py.
Run: python dev/run_experiments.py projects/EFL/experiments_from_scratch.py
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

EFL = "configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml"
IMPROVED = "configs/LT-Shapes/efl_improved_baseline_R_18_FPN_tiny.yaml"
LIBRA_EFL = "configs/LT-Shapes/libra_efl_retinanet_R_18_FPN_tiny.yaml"
OUTPUT_ROOT = "output/efl"
COLUMNS = ("AP", "APr", "APc", "APf")


def scale(s):
    return ["MODEL.EFL.SCALE", str(float(s))]


ROWS = [
    # RetinaNet (max-IoU anchors), RFS: focal loss, each EFL factor alone, both (Table 3)
    ("RetinaNet, focal loss (s=0)", EFL, scale(0)),
    ("RetinaNet, EFL focusing only", EFL, ["MODEL.EFL.USE_WEIGHTING", "False"]),
    ("RetinaNet, EFL weighting only", EFL, ["MODEL.EFL.USE_FOCUSING", "False"]),
    ("RetinaNet, EFL (both)", EFL, []),
    # improved baseline (ATSS, IoU branch, anchor scales, GIoU, GN, warm-up, clipping, RFS): s
    # (Table 4)
    ("improved baseline, focal loss (s=0)", IMPROVED, scale(0)),
    ("improved baseline, EFL s=2", IMPROVED, scale(2)),
    ("improved baseline, EFL s=4", IMPROVED, scale(4)),
    ("improved baseline, EFL s=8", IMPROVED, []),
    # run-to-run spread: the focal-loss improved baseline again with another seed
    ("improved baseline, focal loss (s=0), seed 1", IMPROVED, scale(0) + ["SEED", "1"]),
    # Libra RetinaNet (BFP + Balanced L1) with focal loss, and + EFL
    ("Libra RetinaNet, focal loss (s=0)", LIBRA_EFL, scale(0)),
    ("Libra RetinaNet + EFL", LIBRA_EFL, []),
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
