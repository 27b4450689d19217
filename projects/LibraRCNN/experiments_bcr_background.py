"""BCR on background RoIs (issue #11): the literal Eq. 20 (background RoIs' negatives scaled by w_j
like any other sample's) against the EQL-style exclusion (MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND:
background RoIs weigh every column 1), each over the same three seeds, on the tiny LT-Shapes Faster
R-CNN with LibraROIHeads and only BCR switched on (the "+BCR" row of the ablation).
Run: python dev/run_experiments.py projects/LibraRCNN/experiments_bcr_background.py --jobs 2"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
BCR = ["MODEL.ROI_HEADS.NAME", "LibraROIHeads", "MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "bcr"]
OUTPUT_ROOT = "output/libra_rcnn_bcr_background"
RESULTS = "docs/results/libra_rcnn_bcr_background"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
ROWS = [
    (
        "{}, seed {}".format(form, seed),
        BASE,
        BCR + ["MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND", str(exclude), "SEED", str(seed)],
    )
    for seed in SEEDS
    for form, exclude in (("literal", False), ("exclude background", True))
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
