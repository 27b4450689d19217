"""BFP on the dense LT-Shapes variant (issue #15) over three seeds: the dense Faster R-CNN
(``configs/LT-Shapes/faster_rcnn_R_18_FPN_dense.yaml``: 320 px images with 8-16 objects,
``make data-dense``; the tiny family's pre-trained recipe, ``make pretrained``) and the same with
the Balanced Feature Pyramid (non-local refine), as the "+BFP" row of experiments.py. The mechanism
first: ``projects/diagnose.py`` on the +BFP checkpoint measures how much the refine changes the
integrated feature (1% at 128 px) and the level energies before and after BFP. The non-local
refine starts as the identity (its output conv is zero, as in the reference), so a third row swaps
it for the conv refine (a 3x3 conv + ReLU, not the identity at initialisation).

    python dev/run_experiments.py projects/LibraRCNN/experiments_dense.py --jobs 2
"""

CONFIG = "configs/LT-Shapes/faster_rcnn_R_18_FPN_dense.yaml"
OUTPUT_ROOT = "output/libra_rcnn_dense_seeds"
RESULTS = "docs/results/libra_rcnn_dense_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 15.0  # measured 2026-12-07: 14-18 min a row, two rows at a time on 2 cores
SETTINGS = [
    ("baseline", CONFIG, []),
    ("+BFP", CONFIG, ["MODEL.BACKBONE.NAME", "build_resnet_bfp_backbone"]),
    # the refine's own test: a 3x3 conv that is not the identity at initialisation
    (
        "+BFP (conv refine)",
        CONFIG,
        ["MODEL.BACKBONE.NAME", "build_resnet_bfp_backbone", "MODEL.BFP.REFINE_TYPE", "conv"],
    ),
]
