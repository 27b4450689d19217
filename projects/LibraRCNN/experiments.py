"""The LT-Shapes ablation of projects/LibraRCNN/README.md over three seeds, on the tiny family's
recipe (the pre-trained ResNet-18 with FrozenBN, no gradient clip; ``make pretrained`` first): each
Libra component alone on the tiny Faster R-CNN baseline (Balanced L1 and its journal form LGR-L1
each), then all of them, with BCR or LGR-CE as the classification loss. The table gives each
setting's mean and spread over the seeds and its paired difference from the baseline.

    python dev/run_experiments.py projects/LibraRCNN/experiments.py --jobs 2

The baseline's seeds are the tiny-recipe table's pre-trained rows (dev/experiments_tiny_recipe.py,
the same config and seeds): where that table has trained them, they are evaluated, not trained
again (``reuse``).
"""

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
LIBRA = "configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml"
ROI = ["MODEL.ROI_HEADS.NAME", "LibraROIHeads"]
OUTPUT_ROOT = "output/libra_rcnn_seeds"
RESULTS = "docs/results/libra_rcnn_seeds"  # the committed copy, rewritten as rows finish
SEEDS = (1, 2, 3)
MINUTES_PER_ROW = 13.0  # the tiny Faster R-CNN at 2 jobs on 2 cores
REFERENCE = "baseline"
#: the tiny Faster R-CNN baseline of dev/experiments_tiny_recipe.py, per seed
TINY_RECIPE_BASELINE = "output/tiny_recipe/pretrained_frozenbn_no_clip_seed_{seed}/model_final.pth"
SETTINGS = [
    ("baseline", BASE, [], {"reuse": TINY_RECIPE_BASELINE}),
    (
        "+IoU-balanced sampling",
        BASE,
        ROI
        + [
            "MODEL.ROI_HEADS.SAMPLER.POS",
            "instance",
            "MODEL.ROI_HEADS.SAMPLER.NEG",
            "iou_balanced",
        ],
    ),
    ("+BFP", BASE, ["MODEL.BACKBONE.NAME", "build_resnet_bfp_backbone"]),
    ("+Balanced L1", BASE, ROI + ["MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "balanced_l1"]),
    # the journal's name and form of the same idea (its Table 3 ablates LGR-L1)
    ("+LGR-L1", BASE, ROI + ["MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "lgr_l1"]),
    ("+LGR-CE", BASE, ROI + ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "lgr_ce"]),
    ("+BCR", BASE, ROI + ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "bcr"]),
    ("all (sampling + BFP + BL1 + BCR)", LIBRA, []),
    # the journal's COCO recipe: LGR-CE instead of BCR (the classification loss is one or the other)
    ("all with LGR-CE instead of BCR", LIBRA, ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "lgr_ce"]),
]
