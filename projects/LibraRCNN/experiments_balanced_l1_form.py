"""Balanced L1's two forms at beta = 0.11 (issue #11) on a tiny Libra RetinaNet (BFP + Balanced
L1), each over the same three seeds: the reference's form (gradient about 4 at zero error, a jump
at beta; what the published Libra RetinaNet numbers come from) and the form re-derived to be
continuous for any beta (MODEL.RETINANET.BALANCED_L1.FORM).

The detector is libra_efl_retinanet_R_18_FPN_tiny.yaml with EFL's scale 0, i.e. Libra RetinaNet
with sigmoid focal loss, GN heads, lr 0.02 and repeat-factor sampling (8.2 AP in the EFL table).
The plain libra_retinanet_R_18_FPN_tiny.yaml (lr 0.01, no GN) reaches only about 1 AP in 600
iterations (measured, seed 1: 1.0 reference, 0.9 continuous), too close to the floor to compare
two losses.
Run: python dev/run_experiments.py projects/LibraRCNN/experiments_balanced_l1_form.py --jobs 2"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

LIBRA_RETINANET = "configs/LT-Shapes/libra_efl_retinanet_R_18_FPN_tiny.yaml"
FOCAL_LOSS = ["MODEL.EFL.SCALE", "0.0"]
OUTPUT_ROOT = "output/balanced_l1_form"
RESULTS = "docs/results/balanced_l1_form"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
ROWS = [
    (
        "{}, seed {}".format(form, seed),
        LIBRA_RETINANET,
        FOCAL_LOSS + ["MODEL.RETINANET.BALANCED_L1.FORM", form, "SEED", str(seed)],
    )
    for seed in SEEDS
    for form in ("reference", "continuous")
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
