"""R-CNN Gradient Annealing (``MODEL.RGA``) and Parallel R-CNN Modules (``MODEL.PRM``)."""

from detectron2.config import CfgNode as CN


def add_rga_config(cfg):
    """Add ``MODEL.RGA`` to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "RGA" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
    # --- R-CNN Gradient Annealing (RGA; libra_d2/engine/gradient_annealing.py) ---
    # Before the optimizer step (and its gradient clipping), the gradients of the R-CNN module are
    # multiplied by lambda_t = LAMBDA0 - (LAMBDA0 - 1) t / END_ITER (1 from END_ITER on).
    _C.MODEL.RGA = CN()
    _C.MODEL.RGA.ENABLED = False
    _C.MODEL.RGA.LAMBDA0 = 7.0
    _C.MODEL.RGA.END_ITER = -1  # -1: SOLVER.MAX_ITER
    _C.MODEL.RGA.CONSTANT = False  # True: lambda = LAMBDA0 throughout (the non-annealed ablation)
    # Module-name prefixes (whole name components) whose parameters are scaled. The defaults cover
    # StandardROIHeads / LibraROIHeads (box_head, box_predictor) and ParallelROIHeads
    # (box_heads.<k>, box_predictors.<k>). Backbone and RPN are never meant to be listed.
    _C.MODEL.RGA.MODULES = [
        "roi_heads.box_head",
        "roi_heads.box_predictor",
        "roi_heads.box_heads",
        "roi_heads.box_predictors",
    ]
    _C.MODEL.RGA.INCLUDE_MASK_HEAD = False  # also scale roi_heads.mask_head
    return cfg


def add_prm_config(cfg):
    """Add ``MODEL.PRM`` to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "PRM" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
    # --- Parallel R-CNN Modules (PRM; ROI_HEADS.NAME "ParallelROIHeads") ---
    # One box head + predictor per entry, each trained on its own sampling of the same proposals
    # with this positive fraction (ROI_HEADS.POSITIVE_FRACTION is then unused). 0.5 = 1:1, 0.1 =
    # 1:9.
    _C.MODEL.PRM = CN()
    _C.MODEL.PRM.POSITIVE_FRACTIONS = [0.5, 0.1]
    # -1: average the heads' pre-softmax class logits, boxes from the highest-fraction head;
    # k: evaluate head k alone (its logits and its boxes).
    _C.MODEL.PRM.TEST_HEAD = -1
    # True: with the random sampler, the modules' samples are nested prefixes of one random order
    # of the positives and one of the negatives (each is still a uniform random sample of its own
    # size and fraction; the 1:9 module's positives are a subset of the 1:1 module's, its
    # negatives a superset), so fewer distinct RoIs are pooled per step (179 instead of up to
    # 256 per image for 1:1 and 1:9 of 128). False: independent samples (the paper). No effect
    # with Libra's balanced samplers (always independent) or with one module. The default is the
    # measured choice (projects/RGA_PRM/README.md, "PRM sampling over three seeds").
    _C.MODEL.PRM.NESTED_SAMPLING = True
    return cfg
