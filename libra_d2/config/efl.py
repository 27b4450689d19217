"""Equalized Focal Loss and its improved one-stage baseline (``MODEL.EFL``)."""

from detectron2.config import CfgNode as CN


def add_efl_config(cfg):
    """Add ``MODEL.EFL`` to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "EFL" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
    # --- Equalized Focal Loss (META_ARCHITECTURE "EFLRetinaNet";
    # modeling/meta_arch/efl_retinanet.py) --- gamma_j = GAMMA_B + SCALE (1 - g_j), weight_j =
    # gamma_j / GAMMA_B (paper eq. 3-4); SCALE 0 is sigmoid focal loss.
    _C.MODEL.EFL = CN()
    _C.MODEL.EFL.GAMMA_B = 2.0
    _C.MODEL.EFL.SCALE = 8.0
    _C.MODEL.EFL.FOCAL_ALPHA = 0.25
    _C.MODEL.EFL.USE_FOCUSING = True  # False: gamma_j = GAMMA_B for every class (Table 3)
    _C.MODEL.EFL.USE_WEIGHTING = True  # False: weight_j = 1 (Table 3)
    # "num_pos": positive anchors of the global batch (SUM-all-reduced) / world size, as the paper
    # and its reference; "ema": Detectron2's RetinaNet EMA of the per-process count.
    _C.MODEL.EFL.LOSS_NORMALIZER = "num_pos"
    _C.MODEL.EFL.LOG_PERIOD = (
        20  # g_j, gamma_j, w_j per frequency group to the EventStorage; 0: off
    )
    # Improved one-stage baseline (paper sec. 4.1). "iou": Detectron2's max-IoU matcher with
    # MODEL.RETINANET.IOU_THRESHOLDS; "atss": ATSSMatcher with ATSS_TOPK candidates per level.
    _C.MODEL.EFL.ANCHOR_MATCHER = "iou"
    _C.MODEL.EFL.ATSS_TOPK = 18
    # IoU branch replacing ATSS's centerness: BCE against the IoU of the decoded box with its GT on
    # positives; test score = sigmoid(cls) * sigmoid(iou).
    _C.MODEL.EFL.IOU_BRANCH = False
    _C.MODEL.EFL.IOU_LOSS_WEIGHT = 1.0
    return cfg
