"""FCOS for YAML configs (``MODEL.FCOS``): Detectron2 builds its FCOS from lazy configs only, with
these values (``configs/common/models/fcos.py``), so the keys carry its defaults."""

from detectron2.config import CfgNode as CN


def add_fcos_config(cfg):
    """Add ``MODEL.FCOS`` to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "FCOS" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
    # --- FCOS (META_ARCHITECTURE "EFLFCOS", modeling/meta_arch/efl_fcos.py; with MODEL.EFL.SCALE
    # 0 it is Detectron2's FCOS, focal loss with MODEL.EFL.FOCAL_ALPHA and GAMMA_B) ---
    _C.MODEL.FCOS = CN()
    _C.MODEL.FCOS.NUM_CLASSES = 80
    _C.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    _C.MODEL.FCOS.NUM_CONVS = 4  # per subnet (classification, box + centerness)
    _C.MODEL.FCOS.NORM = "GN"
    _C.MODEL.FCOS.PRIOR_PROB = 0.01
    # FCOS* center sampling (Detectron2's FCOS always samples centres): an anchor point is positive
    # only within this many strides of the GT centre, inside the GT and in its level's size range.
    _C.MODEL.FCOS.CENTER_SAMPLING_RADIUS = 1.5
    # Test: the score is sqrt(class probability x centerness)
    _C.MODEL.FCOS.SCORE_THRESH_TEST = 0.2
    _C.MODEL.FCOS.TOPK_CANDIDATES_TEST = 1000
    _C.MODEL.FCOS.NMS_THRESH_TEST = 0.6
    return cfg
