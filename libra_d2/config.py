"""add_libra_config(cfg): every config key libra_d2 adds, with defaults equal to the papers'."""
from detectron2.config import CfgNode as CN


def add_libra_config(cfg):
    """Add libra_d2's keys to a Detectron2 config (in place). Safe to call twice."""
    _C = cfg
    if "LIBRA_D2" in _C:
        return cfg
    _C.LIBRA_D2 = CN()
    # Datasets that libra_d2 generates (LT-Shapes): where they live, how they are made.
    _C.LIBRA_D2.LT_SHAPES_ROOT = ""  # "" -> $DETECTRON2_DATASETS/lt_shapes (default ./datasets)
    # --- Balanced Feature Pyramid (Libra R-CNN) ---
    # Backbones build_resnet_bfp_backbone / build_retinanet_resnet_bfp_backbone /
    # build_resnet_bpafpn_backbone ... (libra_d2/modeling/backbone); the FPN itself uses MODEL.FPN.*.
    _C.MODEL.BFP = CN()
    # Index into the FPN output list of the level all levels are integrated at. 2 on P2-P6 = P4
    # (R-CNN). On RetinaNet's P3-P7 the reference uses 1 (= P4): set it in RetinaNet configs.
    _C.MODEL.BFP.REFINE_LEVEL = 2
    # "non_local" (embedded Gaussian, paper default), "conv" (3x3 conv + ReLU) or "none".
    _C.MODEL.BFP.REFINE_TYPE = "non_local"
    _C.MODEL.BFP.NON_LOCAL_REDUCTION = 1
    # Scale the non-local dot products by 1/sqrt(C'); the paper (eq. 4) and reference do not.
    _C.MODEL.BFP.NON_LOCAL_USE_SCALE = False
    # Detectron2 norm ("", "GN", "BN", "SyncBN", ...) of the refine module (conv or non-local output).
    _C.MODEL.BFP.NORM = ""
    # --- end Balanced Feature Pyramid ---
    return cfg
