"""Does the non-local refine learn given time? (issue #15) The dense Faster R-CNN and +BFP of
``experiments_dense.py`` on a 2x schedule (1,200 iterations, LR steps at 960 and 1,120), seed 1.
After 600 iterations the non-local refine changes the integrated feature by 0.34% of its norm
(it starts as the identity: its output conv is zero, as in the reference); ``projects/diagnose.py``
on this run's 200-iteration checkpoints shows whether that grows. One seed: the AP pair is a
single paired difference, not a verdict (the dense baseline's seed SD is 1.2 AP).

    python dev/run_experiments.py projects/LibraRCNN/experiments_dense_long.py --jobs 2
"""

CONFIG = "configs/LT-Shapes/faster_rcnn_R_18_FPN_dense.yaml"
OUTPUT_ROOT = "output/libra_rcnn_dense_long"
RESULTS = "docs/results/libra_rcnn_dense_long"  # the committed copy, rewritten as rows finish
SEEDS = (1,)
MINUTES_PER_ROW = 30.0  # twice experiments_dense.py's rows
SCHEDULE_2X = ["SOLVER.MAX_ITER", "1200", "SOLVER.STEPS", "(960, 1120)"]
SETTINGS = [
    ("baseline, 2x", CONFIG, SCHEDULE_2X),
    ("+BFP, 2x", CONFIG, [*SCHEDULE_2X, "MODEL.BACKBONE.NAME", "build_resnet_bfp_backbone"]),
]
