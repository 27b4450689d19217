"""The EFL table of projects/EFL/README.md over three seeds: the EFL RetinaNet of the tiny family on
the dense LT-Shapes variant (320 px images with 8-16 objects,
``configs/LT-Shapes/efl_retinanet_R_18_FPN_dense.yaml``; ``make data-dense``), on the tiny
family's recipe (the pre-trained ResNet-18 with FrozenBN, no gradient clip; ``make pretrained``), at
the scale s in {0, 2, 4, 8} (s = 0 is focal loss). Each setting's mean and spread, and its paired
difference from focal loss. The mechanism comes first: ``dev/plot_efl_grad_ratio.py`` on these
runs shows whether g_j of the rare group stays below 1.

    python dev/run_experiments.py projects/EFL/experiments.py --jobs 2
"""

CONFIG = "configs/LT-Shapes/efl_retinanet_R_18_FPN_dense.yaml"
OUTPUT_ROOT = "output/efl_dense_seeds"
RESULTS = "docs/results/efl_dense_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 23.0  # the dense EFL RetinaNet at 2 jobs on 2 cores (measured 2026-12-07)
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
SETTINGS = [
    (
        "focal loss (s=0)" if s == 0 else "EFL s={}".format(s),
        CONFIG,
        ["MODEL.EFL.SCALE", str(float(s))],
    )
    for s in (0, 2, 4, 8)
]
