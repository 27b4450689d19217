"""The first LT-Shapes ablation of projects/LOCE/README.md, single runs from scratch (the tiny
recipe before issue #15; the 3-seed table of the pre-trained recipe is experiments.py) (paper Table
1, on the tiny Faster R-CNN: the tiny mask head makes each CPU step 1.7x slower and the table
reports box AP): a stage-1 model (plain CE, mean scores tracked), then four 150-iteration stage-2
fine-tunes from it with the backbone and shared box FCs frozen. Columns are box AP (TASK "bbox"),
comparable with the other projects' LT-Shapes tables. The stage-2 rows need the stage-1 row's
model_final.pth: they are marked {"after": stage 1}, so they start once it has finished, whatever
--jobs.

    python dev/run_experiments.py projects/LOCE/experiments_from_scratch.py --jobs 2
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

STAGE1 = "configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage1.yaml"
STAGE2 = "configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage2.yaml"
OUTPUT_ROOT = "output/loce"
WEIGHTS = ["MODEL.WEIGHTS", "output/loce/stage_1_baseline/model_final.pth"]
EBL_OFF = ["MODEL.LOCE.EQUILIBRIUM_LOSS", "False"]
MFS_OFF = ["MODEL.LOCE.MFS.ENABLED", "False"]
AFTER_STAGE1 = {"after": "stage-1 baseline"}
TASK = "bbox"
COLUMNS = ("AP", "APr", "APc", "APf")
ROWS = [
    ("stage-1 baseline", STAGE1, []),
    # stage 2, same frozen parts and schedule in every row; only the objective / sampling differ
    ("fine-tune baseline (CE)", STAGE2, WEIGHTS + EBL_OFF + MFS_OFF, AFTER_STAGE1),
    ("+EBL", STAGE2, WEIGHTS + MFS_OFF, AFTER_STAGE1),
    ("+MFS", STAGE2, WEIGHTS + EBL_OFF, AFTER_STAGE1),
    ("EBL + MFS (LOCE)", STAGE2, WEIGHTS, AFTER_STAGE1),
]
# measured with the tiny configs' recipe before issue #15: from scratch (BatchNorm, clip 1.0)
ROWS = [
    (name, config, TINY_FROM_SCRATCH + overrides, *rest) for name, config, overrides, *rest in ROWS
]
