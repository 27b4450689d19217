"""The tiny family's recipe (issue #15): the tiny Faster R-CNN on LT-Shapes trained from scratch
with the per-parameter clip at 1.0 (the recipe of every table so far), from scratch without a clip,
and fine-tuned from the locally pre-trained ResNet-18
(``libra_d2://pretrained/R-18-LTShapes-crops.pth``, ``make pretrained``) with FrozenBN, res2 and
the stem frozen (Detectron2's FREEZE_AT 2) and no clip, the way real configs fine-tune from
ImageNet weights (the tiny configs' recipe since); each over the same three seeds.
Run: python dev/run_experiments.py dev/experiments_tiny_recipe.py --jobs 2
"""

from libra_d2.checkpoint.pretrained import TINY_FROM_SCRATCH

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
OUTPUT_ROOT = "output/tiny_recipe"
RESULTS = "docs/results/tiny_recipe"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 13.0  # measured: the tiny Faster R-CNN at 2 jobs on 2 cores
# the tiny configs' recipe is now the pre-trained one, so from scratch is TINY_FROM_SCRATCH
SETTINGS = [
    ("scratch, clip 1.0", BASE, TINY_FROM_SCRATCH),
    ("scratch, no clip", BASE, TINY_FROM_SCRATCH + ["SOLVER.CLIP_GRADIENTS.ENABLED", "False"]),
    ("pretrained, FrozenBN, no clip", BASE, []),
]
