"""Balanced L1's two forms at beta = 0.11 (issue #11) on the tiny Libra RetinaNet (BFP + Balanced
L1), each over the same three seeds: the reference's form (gradient about 4 at zero error, a jump
at beta; what the published Libra RetinaNet numbers come from) and the form re-derived to be
continuous for any beta (MODEL.RETINANET.BALANCED_L1.FORM).
Run: python dev/run_experiments.py projects/LibraRCNN/experiments_balanced_l1_form.py --jobs 2"""
LIBRA_RETINANET = "configs/LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml"
OUTPUT_ROOT = "output/balanced_l1_form"
SEEDS = (1, 2, 3)
ROWS = [
    ("{}, seed {}".format(form, seed), LIBRA_RETINANET,
     ["MODEL.RETINANET.BALANCED_L1.FORM", form, "SEED", str(seed)])
    for seed in SEEDS
    for form in ("reference", "continuous")
]
