"""Libra R-CNN's keys: Balanced Feature Pyramid, balanced samplers, Balanced L1 / LGR-L1, and
the box predictor's classification losses (LGR-CE, BCR)."""

from detectron2.config import CfgNode as CN


def add_libra_rcnn_config(cfg):
    """Add Libra R-CNN's keys (``MODEL.BFP``, ``*.SAMPLER``, ``*.BALANCED_L1``, the box
    predictor's ``CLS_LOSS_TYPE``) to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "BFP" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
    # --- Balanced Feature Pyramid (Libra R-CNN) ---
    # Backbones build_resnet_bfp_backbone / build_retinanet_resnet_bfp_backbone /
    # build_resnet_bpafpn_backbone ... (libra_d2/modeling/backbone); the FPN itself uses
    # MODEL.FPN.*.
    _C.MODEL.BFP = CN()
    # Index into the FPN output list of the level all levels are integrated at. 2 on P2-P6 = P4
    # (R-CNN). On RetinaNet's P3-P7 the reference uses 1 (= P4): set it in RetinaNet configs.
    _C.MODEL.BFP.REFINE_LEVEL = 2
    # "non_local" (embedded Gaussian, paper default), "conv" (3x3 conv + ReLU) or "none".
    _C.MODEL.BFP.REFINE_TYPE = "non_local"
    _C.MODEL.BFP.NON_LOCAL_REDUCTION = 1
    # Scale the non-local dot products by 1/sqrt(C'); the paper (eq. 4) and reference do not.
    _C.MODEL.BFP.NON_LOCAL_USE_SCALE = False
    # Detectron2 norm ("", "GN", "BN", "SyncBN", ...) of the refine module (conv or non-local
    # output).
    _C.MODEL.BFP.NORM = ""

    # --- Sample-level balance (Libra R-CNN): RoI and anchor subsampling ---
    # libra_d2/modeling/sampling.py. With POS = NEG = "random" this is Detectron2's
    # subsample_labels.
    for node in (_C.MODEL.ROI_HEADS, _C.MODEL.RPN):
        node.SAMPLER = CN()
        node.SAMPLER.POS = (
            "random"  # "random" | "instance" (equal per GT) | "class" (equal per class)
        )
        node.SAMPLER.NEG = "random"  # "random" | "iou_balanced"
        node.SAMPLER.NUM_BINS = 3  # K of IoU-balanced sampling
        node.SAMPLER.FLOOR_THR = (
            -1.0
        )  # negatives below it form the floor set; -1: none (all in bins)
        node.SAMPLER.FLOOR_FRACTION = 0.0  # share of negatives drawn from the floor set
        # Upper end of the IoU bins; -1: the max IoU over the image's proposals (the reference;
        # 1.0 when GT boxes are added as proposals, so with a 0.5 positive threshold the top bin
        # of K = 3 is empty). 0.5 (= the negative threshold) spreads the K bins over negatives.
        node.SAMPLER.IOU_UPPER = -1.0

    # Proposal matcher of LibraROIHeads, from libra_d2's MATCHER_REGISTRY (it must implement
    # match_with_quality). Thresholds and labels: MODEL.ROI_HEADS.IOU_THRESHOLDS / IOU_LABELS.
    _C.MODEL.ROI_HEADS.MATCHER = "MaxIoUMatcher"

    # --- Objective-level balance (Libra R-CNN): Balanced L1 / LGR-L1 box losses ---
    # Selected by the existing BBOX_REG_LOSS_TYPE keys ("balanced_l1" or "lgr_l1", besides
    # Detectron2's "smooth_l1", "giou", ...). alpha * ln(b + 1) = gamma fixes b.
    for node, beta in (
        (_C.MODEL.ROI_BOX_HEAD, 1.0),
        (_C.MODEL.RPN, 1.0),
        (_C.MODEL.RETINANET, 0.11),
    ):
        node.BALANCED_L1 = CN()
        node.BALANCED_L1.ALPHA = 0.5
        node.BALANCED_L1.GAMMA = 1.5
        node.BALANCED_L1.BETA = beta  # 0.11 for RetinaNet as in the reference
        # "reference": the public reference's formula, from which the published numbers come
        # (its gradient is ~alpha (1/beta - 1) at zero error and jumps at beta when beta != 1);
        # "continuous": the exact integral of the paper's gradient (Eq. 8) for any beta. The same
        # loss at beta = 1 (R-CNN, RPN). libra_d2/layers/balanced_l1.py derives both.
        node.BALANCED_L1.FORM = "reference"

    # --- Classification balance in the box predictor (Libra R-CNN journal, eq. 18-23) ---
    # "ce" (softmax CE, Detectron2's), "lgr_ce" (Logarithmic Gradient Re-weighting of CE) or
    # "bcr" (sigmoid CE with Bucketed Class Re-weighting of rare negatives).
    _C.MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE = "ce"
    _C.MODEL.ROI_BOX_HEAD.LGR_CE = CN()
    _C.MODEL.ROI_BOX_HEAD.LGR_CE.ALPHA = 0.8  # Table 7's best (alpha 0.8, gamma 1.0)
    _C.MODEL.ROI_BOX_HEAD.LGR_CE.GAMMA = 1.0
    _C.MODEL.ROI_BOX_HEAD.BCR = CN()
    _C.MODEL.ROI_BOX_HEAD.BCR.NUM_BUCKETS = 10  # S
    _C.MODEL.ROI_BOX_HEAD.BCR.TURNING_POINT = 0.5  # a
    _C.MODEL.ROI_BOX_HEAD.BCR.TEMPERATURE = 0.025  # t
    # Initial probability of every class of the sigmoid classifier (bias = -log((1 - p) / p)), as
    # sigmoid detectors do; with a zero bias every class starts at 0.5 and training first spends
    # its iterations pushing every sigmoid down.
    _C.MODEL.ROI_BOX_HEAD.BCR.PRIOR_PROB = 0.01
    # Background RoIs: True (default) gives them weight 1 in every column (EQL's E(r) exclusion:
    # the suppression is for samples of another foreground class); False is the literal Eq. 20,
    # which scales their negatives for every foreground class j by w_j too, so rare classes get
    # almost no "not me" gradient from background and fire on it. The default is the measured
    # choice (projects/LibraRCNN/README.md, "BCR on background RoIs").
    _C.MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND = True
    return cfg
