"""RGA measured where the clip does not cancel it (issue #11): the tiny Faster R-CNN baseline and
RGA (lambda 7 -> 1), each over the same three seeds, both with whole-model gradient clipping at a
total norm of 10 instead of the tiny family's per-parameter clip at 1.0. A per-parameter clip at
1.0 caps every R-CNN tensor's gradient whatever lambda is, so it undoes RGA's scaling; a
whole-model clip keeps the ratio of the R-CNN gradients to the rest (the direction of the step),
and the bound 10 is above the baseline's total norm after its first iterations (measured: about 10
over its first 20 iterations, then 3 to 5), so the baseline is essentially unclipped. Without any
clip, RGA at lr 0.02 diverged from scratch by iteration 60 (measured, total norm 21 -> 254 -> inf).
Each run logs clip/total_norm and clip/clipped_fraction, so how hard the clip acted is in its
metrics.json. Run: python dev/run_experiments.py projects/RGA_PRM/experiments_rga_seeds.py --jobs 2
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga.yaml"
OUTPUT_ROOT = "output/rga_seeds"
RESULTS = "docs/results/rga_seeds"  # the committed copy, rewritten as rows finish
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
SEEDS = (1, 2, 3)
FULL_MODEL_CLIP = [
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
    "full_model",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
    "10.0",
]
ROWS = [
    ("{}, seed {}".format(name, seed), config, FULL_MODEL_CLIP + ["SEED", str(seed)])
    for seed in SEEDS
    for name, config in (("baseline", BASE), ("RGA", RGA))
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
