"""LOCE: Equilibrium Loss, mean scores, decoupled fine-tuning, Memory-augmented Feature Sampling
(``MODEL.LOCE``)."""

from detectron2.config import CfgNode as CN


def add_loce_config(cfg):
    """Add ``MODEL.LOCE`` to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "LOCE" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
    # --- LOCE (ROI_HEADS.NAME "LOCEROIHeads"; modeling/roi_heads/loce_roi_heads.py, engine/loce.py)
    # --- LOCEROIHeads always tracks the mean classification score vector s (C + 1 entries, a
    # checkpointed buffer roi_heads.box_predictor.mean_score.score): with everything below off it
    # trains exactly like LibraROIHeads ("track-only", e.g. the stage-1 baseline's mean-score
    # curve).
    _C.MODEL.LOCE = CN()
    # Equilibrium Loss: cross-entropy on z + log s (paper eq. 3-4); plain softmax at test time.
    _C.MODEL.LOCE.EQUILIBRIUM_LOSS = False
    _C.MODEL.LOCE.SCORE_MOMENTUM = 0.9  # alpha: s <- a^n s + (1 - a^n) mean(entries), n entries
    _C.MODEL.LOCE.BACKGROUND_SCORE = 0.01  # constant background entry s_{C+1}
    _C.MODEL.LOCE.INIT_SCORE = 0.01  # initial foreground entries
    _C.MODEL.LOCE.LOG_PERIOD = 20  # loce/mean_score/{r,c,f,all} to the EventStorage; 0: off
    # Decoupled stage 2: fine-tune from a stage-1 checkpoint (MODEL.WEIGHTS, or a checkpoint in
    # OUTPUT_DIR to resume; training fails with a ConfigError without either). The modules under the
    # FREEZE prefixes (whole name components) get requires_grad False and their BatchNorm layers are
    # kept in eval mode (running statistics never change). Box predictor, RPN, mask head train.
    _C.MODEL.LOCE.FINETUNE = False
    _C.MODEL.LOCE.FREEZE = ["backbone", "roi_heads.box_head"]
    # Reset s to INIT_SCORE when a fine-tune starts from iteration 0 (the reference starts stage 2
    # from fresh scores); a resumed run keeps the checkpointed s.
    _C.MODEL.LOCE.RESET_SCORES_AT_START = True
    # Memory-augmented Feature Sampling (needs the frozen backbone of FINETUNE: stored features
    # must stay valid). The memory is per process and not checkpointed: it is re-filled on resume.
    _C.MODEL.LOCE.MFS = CN()
    _C.MODEL.LOCE.MFS.ENABLED = False
    _C.MODEL.LOCE.MFS.QUEUE_SIZE = 80  # M, items per class
    _C.MODEL.LOCE.MFS.NUM_CLASSES = 8  # k classes drawn per step (per process), p ~ 1 / s
    _C.MODEL.LOCE.MFS.SAMPLES_PER_CLASS = 4  # m rows per drawn class
    _C.MODEL.LOCE.MFS.NUM_JITTER = 16  # jittered boxes per GT pushed each step (eq. 5)
    _C.MODEL.LOCE.MFS.DEVICE = "cpu"  # where the memory lives; "": the model's device
    _C.MODEL.LOCE.MFS.DTYPE = (
        "float32"  # storage precision: "float32" or "float16" (half the memory)
    )
    # Class-balanced pre-fill before training: up to this many training images per class
    # (0: no pre-fill), run through the backbone in batches of PREFILL_BATCH_SIZE.
    _C.MODEL.LOCE.MFS.PREFILL_IMAGES_PER_CLASS = 5
    _C.MODEL.LOCE.MFS.PREFILL_BATCH_SIZE = 8
    return cfg
