"""EFL where rare classes are as rare, relative to the data, as LVIS's (issue #15): the tiny EFL
RetinaNet on the large LT-Shapes variant (``configs/LT-Shapes/efl_retinanet_R_18_FPN_large.yaml``;
``make data-large``: 20,000 images of 128 px, the rare categories in 2-10 of them; the tiny
family's pre-trained recipe, ``make pretrained``), focal loss against EFL (s = 8), over three seeds.
The mechanism first: ``dev/plot_efl_grad_ratio.py`` on these runs shows whether g_j of the rare
group stays below 1 when a rare class's positives are that rare. 600 iterations at batch 8 see
4,800 images, a quarter of the set.

    python dev/run_experiments.py projects/EFL/experiments_large.py --jobs 2
"""

CONFIG = "configs/LT-Shapes/efl_retinanet_R_18_FPN_large.yaml"
OUTPUT_ROOT = "output/efl_large_seeds"
RESULTS = "docs/results/efl_large_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 15.0
COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
SETTINGS = [
    ("focal loss (s=0)", CONFIG, ["MODEL.EFL.SCALE", "0.0"]),
    ("EFL s=8", CONFIG, []),
]
