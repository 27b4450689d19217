"""The first LT-Shapes ablation of projects/LibraRCNN/README.md, single runs of the from-scratch
recipe (libra_d2.checkpoint.TINY_FROM_SCRATCH: BatchNorm, per-parameter clip at 1.0; the tiny
configs' recipe until issue #15): each Libra component alone on the tiny Faster R-CNN baseline,
then all of them. The 3-seed table of the pre-trained recipe is experiments.py.
Run: python dev/run_experiments.py projects/LibraRCNN/experiments_from_scratch.py
"""

from libra_d2.checkpoint import TINY_FROM_SCRATCH

BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
LIBRA = "configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml"
ROI = ["MODEL.ROI_HEADS.NAME", "LibraROIHeads"]
BCR_LITERAL = ["MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND", "False"]
OUTPUT_ROOT = "output/libra_rcnn"
ROWS = [
    ("baseline", BASE, []),
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
    ("+LGR-CE", BASE, ROI + ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "lgr_ce"]),
    # (BCR rows: the literal Eq. 20 form these rows were measured with; the default now excludes
    # background RoIs, see experiments_bcr_background.py)
    ("+BCR", BASE, ROI + ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "bcr"] + BCR_LITERAL),
    ("all (sampling + BFP + BL1 + BCR)", LIBRA, BCR_LITERAL),
    # the journal's COCO recipe: LGR-CE instead of BCR (the classification loss is one or the other)
    ("all with LGR-CE instead of BCR", LIBRA, ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "lgr_ce"]),
    # the same baseline with another seed: how far single runs move by chance
    ("baseline, seed 1", BASE, ["SEED", "1"]),
    # the BCR rows again with the default (background RoIs excluded from the re-weighting)
    (
        "+BCR, background excluded (default)",
        BASE,
        ROI + ["MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE", "bcr"],
    ),
    ("all, BCR with background excluded (default)", LIBRA, []),
]
ROWS = [(name, config, TINY_FROM_SCRATCH + overrides) for name, config, overrides in ROWS]
