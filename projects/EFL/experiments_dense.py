"""EFL on the dense LT-Shapes variant (issue #15), from scratch (the tiny recipe before the switch;
of this table only the s = 8 row of seed 1 was trained, for the g_j plot of the EFL README; the
3-seed table of the pre-trained recipe is experiments.py): the EFL RetinaNet of the tiny family on
320 px images with 8-16 objects (``configs/LT-Shapes/efl_retinanet_R_18_FPN_dense.yaml``), at the
scale s in {0, 2, 4, 8} (s = 0 is focal loss), each over the same three seeds. The mechanism comes
first: ``dev/plot_efl_grad_ratio.py`` on these runs shows whether g_j of the rare group stays below
1. Run: python dev/run_experiments.py projects/EFL/experiments_dense.py --jobs 2
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

CONFIG = "configs/LT-Shapes/efl_retinanet_R_18_FPN_dense.yaml"
OUTPUT_ROOT = "output/efl_dense"
SEEDS = (1, 2, 3)
SCALES = (0, 2, 4, 8)
MINUTES_PER_ROW = 45.0
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
ROWS = [
    (
        "{}, seed {}".format("focal loss (s=0)" if s == 0 else "EFL s={}".format(s), seed),
        CONFIG,
        ["MODEL.EFL.SCALE", str(float(s)), "SEED", str(seed)],
    )
    for seed in SEEDS
    for s in SCALES
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
