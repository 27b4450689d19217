"""The LT-Shapes ablation of projects/LOCE/README.md (paper Table 1) over three seeds, on the tiny
family's recipe (the pre-trained ResNet-18 with FrozenBN, no gradient clip; ``make pretrained``
first), with the tiny Faster R-CNN (the tiny mask head makes each CPU step 1.7x slower; the table
reports box AP, comparable with the other projects' LT-Shapes tables): per seed a stage-1 model
(plain CE, mean scores tracked), then four 150-iteration stage-2 fine-tunes from it with the
backbone and shared box FCs frozen. A stage-2 row starts once its seed's stage-1 row has finished
(``after``), whatever --jobs. Each setting's mean and spread, and its paired difference from the
stage-2 fine-tune with plain CE (the paper's comparison: same frozen parts and schedule, only the
objective and sampling differ).

    python dev/run_experiments.py projects/LOCE/experiments.py --jobs 2
"""

STAGE1 = "configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage1.yaml"
STAGE2 = "configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage2.yaml"
OUTPUT_ROOT = "output/loce_seeds"
RESULTS = "docs/results/loce_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 8.0
WEIGHTS = ["MODEL.WEIGHTS", OUTPUT_ROOT + "/stage_1_baseline_seed_{seed}/model_final.pth"]
EBL_OFF = ["MODEL.LOCE.EQUILIBRIUM_LOSS", "False"]
MFS_OFF = ["MODEL.LOCE.MFS.ENABLED", "False"]
AFTER_STAGE1 = {"after": "stage-1 baseline"}
TASK = "bbox"
COLUMNS = ("AP", "APr", "APc", "APf")
REFERENCE = "fine-tune baseline (CE)"
SETTINGS = [
    ("stage-1 baseline", STAGE1, []),
    ("fine-tune baseline (CE)", STAGE2, WEIGHTS + EBL_OFF + MFS_OFF, AFTER_STAGE1),
    ("+EBL", STAGE2, WEIGHTS + MFS_OFF, AFTER_STAGE1),
    ("+MFS", STAGE2, WEIGHTS + EBL_OFF, AFTER_STAGE1),
    ("EBL + MFS (LOCE)", STAGE2, WEIGHTS, AFTER_STAGE1),
]
