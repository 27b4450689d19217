"""PRM sampling (issue #11): the parallel modules' samples drawn independently (the paper) or nested
(one shared random order, MODEL.PRM.NESTED_SAMPLING True), the PRM ensemble on the tiny Faster
R-CNN, each over the same three seeds, in the tiny family's recipe (the PRM rows of the table).
Run: python dev/run_experiments.py projects/RGA_PRM/experiments_prm_sampling.py --jobs 2"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
OUTPUT_ROOT = "output/prm_sampling"
RESULTS = "docs/results/prm_sampling"  # the committed copy, rewritten as rows finish
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
SEEDS = (1, 2, 3)
ROWS = [
    (
        "{}, seed {}".format(name, seed),
        PRM,
        ["MODEL.PRM.NESTED_SAMPLING", str(nested), "SEED", str(seed)],
    )
    for seed in SEEDS
    for name, nested in (("independent", False), ("nested", True))
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
