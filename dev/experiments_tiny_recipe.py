"""The tiny family's recipe (issue #15): the tiny Faster R-CNN on LT-Shapes trained from scratch
with the per-parameter clip at 1.0 (the recipe of every table so far), from scratch without a clip,
and fine-tuned from the locally pre-trained ResNet-18
(``libra_d2://pretrained/R-18-LTShapes-crops.pth``, ``make pretrained``) with FrozenBN, res2 and
the stem frozen (Detectron2's FREEZE_AT 2) and no clip, the way real configs fine-tune from
ImageNet weights; each over the same three seeds.
Run: python dev/run_experiments.py dev/experiments_tiny_recipe.py --jobs 2
"""

from libra_d2.checkpoint.pretrained import TINY_BACKBONE_WEIGHTS

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
OUTPUT_ROOT = "output/tiny_recipe"
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 13.0  # measured: the tiny Faster R-CNN at 2 jobs on 2 cores
NO_CLIP = ["SOLVER.CLIP_GRADIENTS.ENABLED", "False"]
PRETRAINED = [
    "MODEL.WEIGHTS",
    TINY_BACKBONE_WEIGHTS,
    "MODEL.RESNETS.NORM",
    "FrozenBN",
    "MODEL.BACKBONE.FREEZE_AT",
    "2",
] + NO_CLIP
SETTINGS = (
    ("scratch, clip 1.0", []),
    ("scratch, no clip", NO_CLIP),
    ("pretrained, FrozenBN, no clip", PRETRAINED),
)
ROWS = [
    ("{}, seed {}".format(name, seed), BASE, overrides + ["SEED", str(seed)])
    for seed in SEEDS
    for name, overrides in SETTINGS
]
