"""EFL on FCOS* (issue #16): the tiny FCOS* with focal loss (EFL at s = 0) and with EFL (s = 8),
each over the same three seeds, in the tiny family's setting (GN heads, LR 0.02, RFS at 0.125).
Run: python dev/run_experiments.py projects/EFL/experiments_fcos_seeds.py --jobs 2
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

OUTPUT_ROOT = "output/efl_fcos_seeds"
RESULTS = "docs/results/efl_fcos_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
ROWS = [
    ("{}, seed {}".format(name, seed), config, ["SEED", str(seed)])
    for seed in SEEDS
    for name, config in (
        ("FCOS*, focal loss", "configs/LT-Shapes/fcos_R_18_FPN_tiny.yaml"),
        ("FCOS* + EFL", "configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml"),
    )
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
