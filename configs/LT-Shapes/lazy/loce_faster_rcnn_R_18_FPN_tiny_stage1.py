"""LOCE stage 1 on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage1.yaml): the plain tiny lazy Faster R-CNN
with LOCE's ROI heads and box predictor tracking the mean classification scores (softmax
cross-entropy; the Equilibrium Loss and the feature memory are stage 2's,
loce_faster_rcnn_R_18_FPN_tiny_stage2.py, which fine-tunes this model). Its state-dict keys are
those of the YAML stage 1, so either stage 1 feeds either stage 2.
"""

from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.matcher import MaxIoUMatcher
from libra_d2.modeling.roi_heads.loce_roi_heads import LOCEFastRCNNOutputLayers, LOCEROIHeads

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = LOCEROIHeads
model.roi_heads.proposal_matcher._target_ = MaxIoUMatcher  # as LibraROIHeads' from_config
model.roi_heads.memory_feature_shape = (64, 7, 7)  # FPN channels x pooler resolution
model.roi_heads.num_jitter = 16
model.roi_heads.box_predictor._target_ = LOCEFastRCNNOutputLayers
model.roi_heads.box_predictor.use_equilibrium_loss = False  # stage 2 trains with EBL
model.roi_heads.box_predictor.score_momentum = 0.9
model.roi_heads.box_predictor.background_score = 0.01
model.roi_heads.box_predictor.init_score = 0.01
model.roi_heads.box_predictor.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lt_shapes_train"], num_classes=32
)
model.roi_heads.box_predictor.log_period = 20

train.output_dir = "output/lt_shapes/lazy_loce_faster_rcnn_R_18_FPN_tiny_stage1"
