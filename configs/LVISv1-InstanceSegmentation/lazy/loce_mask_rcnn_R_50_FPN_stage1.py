"""LOCE stage 1 on LVIS v1, as a lazy config (the twin of
configs/LVISv1-InstanceSegmentation/loce_mask_rcnn_R_50_FPN_stage1.yaml): the lazy LVIS Mask
R-CNN R-50-FPN of mask_rcnn_R_50_FPN_1x.py with LOCE's ROI heads and box predictor tracking the
mean classification scores (softmax cross-entropy), trained with the random image sampler (no
repeat-factor sampling) for 24 epochs: 150k iterations at batch 16, LR 0.02 dropped at 100k and
137.5k. The Equilibrium Loss and the feature memory are stage 2's
(loce_mask_rcnn_R_50_FPN_stage2.py). Its state-dict keys are those of the YAML stage 1. Run with
projects/lazy_train_net.py."""

from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.matcher import MaxIoUMatcher
from libra_d2.modeling.roi_heads.loce_roi_heads import LOCEFastRCNNOutputLayers, LOCEROIHeads

from .mask_rcnn_R_50_FPN_1x import (
    NUM_CLASSES,
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.roi_heads._target_ = LOCEROIHeads
model.roi_heads.proposal_matcher._target_ = MaxIoUMatcher  # as LibraROIHeads' from_config
model.roi_heads.memory_feature_shape = (256, 7, 7)  # FPN channels x pooler resolution
model.roi_heads.num_jitter = 16
predictor = model.roi_heads.box_predictor
predictor._target_ = LOCEFastRCNNOutputLayers
predictor.use_equilibrium_loss = False  # stage 2 trains with EBL
predictor.score_momentum = 0.9
predictor.background_score = 0.01
predictor.init_score = 0.01
predictor.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lvis_v1_train"], num_classes=NUM_CLASSES
)
predictor.log_period = 20

dataloader.train.repeat_threshold = 0  # the random image sampler: no RFS
train.max_iter = 150000
lr_multiplier.scheduler.milestones = [100000, 137500]
lr_multiplier.scheduler.num_updates = train.max_iter
lr_multiplier.warmup_length = 1000 / train.max_iter
train.output_dir = "output/lvis/lazy_loce_mask_rcnn_R_50_FPN_stage1"
