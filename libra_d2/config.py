"""add_libra_config(cfg): every config key libra_d2 adds, with defaults equal to the papers'."""
from detectron2.config import CfgNode as CN


def add_libra_config(cfg):
    """Add libra_d2's keys to a Detectron2 config (in place). Safe to call twice."""
    _C = cfg
    if "BFP" in _C.MODEL:  # already added: adding again would reset merged values
        return cfg
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

    # --- Sample-level balance (Libra R-CNN): RoI and anchor subsampling ---
    # libra_d2/modeling/sampling.py. With POS = NEG = "random" this is Detectron2's subsample_labels.
    for node in (_C.MODEL.ROI_HEADS, _C.MODEL.RPN):
        node.SAMPLER = CN()
        node.SAMPLER.POS = "random"  # "random" | "instance" (equal per GT) | "class" (equal per class)
        node.SAMPLER.NEG = "random"  # "random" | "iou_balanced"
        node.SAMPLER.NUM_BINS = 3  # K of IoU-balanced sampling
        node.SAMPLER.FLOOR_THR = -1.0  # negatives below it form the floor set; -1: none (all in bins)
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
    for node, beta in ((_C.MODEL.ROI_BOX_HEAD, 1.0), (_C.MODEL.RPN, 1.0), (_C.MODEL.RETINANET, 0.11)):
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
    # sigmoid detectors do; with a zero bias every class starts at 0.5 and training from scratch
    # spends its first iterations pushing 33 sigmoids down (measured: much lower AP in 600 iters).
    _C.MODEL.ROI_BOX_HEAD.BCR.PRIOR_PROB = 0.01
    # Background RoIs: True (default) gives them weight 1 in every column (EQL's E(r) exclusion:
    # the suppression is for samples of another foreground class); False is the literal Eq. 20,
    # which scales their negatives for every foreground class j by w_j too, so rare classes get
    # almost no "not me" gradient from background and fire on it. Chosen by measurement: on
    # LT-Shapes the exclusion gave +8.0 +- 1.4 AP over the literal form (3 seeds, paired), APr
    # 0.2 -> 6.6 (projects/LibraRCNN/README.md, "BCR on background RoIs").
    _C.MODEL.ROI_BOX_HEAD.BCR.EXCLUDE_BACKGROUND = True

    # --- R-CNN Gradient Annealing (RGA; libra_d2/engine/gradient_annealing.py) ---
    # Before the optimizer step (and its gradient clipping), the gradients of the R-CNN module are
    # multiplied by lambda_t = LAMBDA0 - (LAMBDA0 - 1) t / END_ITER (1 from END_ITER on).
    _C.MODEL.RGA = CN()
    _C.MODEL.RGA.ENABLED = False
    _C.MODEL.RGA.LAMBDA0 = 7.0
    _C.MODEL.RGA.END_ITER = -1  # -1: SOLVER.MAX_ITER
    _C.MODEL.RGA.CONSTANT = False  # True: lambda = LAMBDA0 throughout (the non-annealed ablation)
    # Module-name prefixes (whole name components) whose parameters are scaled. The defaults cover
    # StandardROIHeads / LibraROIHeads (box_head, box_predictor) and ParallelROIHeads (box_heads.<k>,
    # box_predictors.<k>). Backbone and RPN are never meant to be listed.
    _C.MODEL.RGA.MODULES = [
        "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.box_heads",
        "roi_heads.box_predictors",
    ]
    _C.MODEL.RGA.INCLUDE_MASK_HEAD = False  # also scale roi_heads.mask_head

    # --- Parallel R-CNN Modules (PRM; ROI_HEADS.NAME "ParallelROIHeads") ---
    # One box head + predictor per entry, each trained on its own sampling of the same proposals
    # with this positive fraction (ROI_HEADS.POSITIVE_FRACTION is then unused). 0.5 = 1:1, 0.1 = 1:9.
    _C.MODEL.PRM = CN()
    _C.MODEL.PRM.POSITIVE_FRACTIONS = [0.5, 0.1]
    # -1: average the heads' pre-softmax class logits, boxes from the highest-fraction head;
    # k: evaluate head k alone (its logits and its boxes).
    _C.MODEL.PRM.TEST_HEAD = -1
    # True: with the random sampler, the modules' samples are nested prefixes of one random order
    # of the positives and one of the negatives (each is still a uniform random sample of its own
    # size and fraction; the 1:9 module's positives are a subset of the 1:1 module's, its
    # negatives a superset), so fewer distinct RoIs are pooled per step (179 instead of up to
    # 256 per image for 1:1 and 1:9 of 128). False: independent samples. No effect with Libra's
    # balanced samplers (always independent) or with one module.
    _C.MODEL.PRM.NESTED_SAMPLING = True

    # --- Equalized Focal Loss (META_ARCHITECTURE "EFLRetinaNet"; modeling/meta_arch/efl_retinanet.py) ---
    # gamma_j = GAMMA_B + SCALE (1 - g_j), weight_j = gamma_j / GAMMA_B (paper eq. 3-4); SCALE 0 is
    # sigmoid focal loss.
    _C.MODEL.EFL = CN()
    _C.MODEL.EFL.GAMMA_B = 2.0
    _C.MODEL.EFL.SCALE = 8.0
    _C.MODEL.EFL.FOCAL_ALPHA = 0.25
    _C.MODEL.EFL.USE_FOCUSING = True  # False: gamma_j = GAMMA_B for every class (Table 3)
    _C.MODEL.EFL.USE_WEIGHTING = True  # False: weight_j = 1 (Table 3)
    # "num_pos": positive anchors of the global batch (SUM-all-reduced) / world size, as the paper
    # and its reference; "ema": Detectron2's RetinaNet EMA of the per-process count.
    _C.MODEL.EFL.LOSS_NORMALIZER = "num_pos"
    _C.MODEL.EFL.LOG_PERIOD = 20  # g_j, gamma_j, w_j per frequency group to the EventStorage; 0: off
    # Improved one-stage baseline (paper sec. 4.1). "iou": Detectron2's max-IoU matcher with
    # MODEL.RETINANET.IOU_THRESHOLDS; "atss": ATSSMatcher with ATSS_TOPK candidates per level.
    _C.MODEL.EFL.ANCHOR_MATCHER = "iou"
    _C.MODEL.EFL.ATSS_TOPK = 18
    # IoU branch replacing ATSS's centerness: BCE against the IoU of the decoded box with its GT on
    # positives; test score = sigmoid(cls) * sigmoid(iou).
    _C.MODEL.EFL.IOU_BRANCH = False
    _C.MODEL.EFL.IOU_LOSS_WEIGHT = 1.0

    # --- LOCE (ROI_HEADS.NAME "LOCEROIHeads"; modeling/roi_heads/loce_roi_heads.py, engine/loce.py) ---
    # LOCEROIHeads always tracks the mean classification score vector s (C + 1 entries, a checkpointed
    # buffer roi_heads.box_predictor.mean_score.score): with everything below off it trains exactly
    # like LibraROIHeads ("track-only", e.g. the stage-1 baseline's mean-score curve).
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
    _C.MODEL.LOCE.MFS.DTYPE = "float32"  # storage precision: "float32" or "float16" (half the memory)
    # Class-balanced pre-fill before training: up to this many training images per class
    # (0: no pre-fill), run through the backbone in batches of PREFILL_BATCH_SIZE.
    _C.MODEL.LOCE.MFS.PREFILL_IMAGES_PER_CLASS = 5
    _C.MODEL.LOCE.MFS.PREFILL_BATCH_SIZE = 8

    # --- Training data (libra_d2/data/dataset_check.py, checked before training starts) ---
    # Boxes with zero or negative width / height and boxes reaching outside the image: "clip"
    # (clip to the image, drop those left empty: Detectron2's mapper, now reported), "drop" (drop
    # every such box), "error" (refuse to train).
    _C.DATALOADER.BAD_BOXES = "clip"
    return cfg
