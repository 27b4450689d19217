"""Mask R-CNN R-50-FPN on LVIS v1, 1x, with repeat-factor sampling (t = 0.001), as a lazy config
(the twin of configs/LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml): Detectron2's lazy
Mask R-CNN FPN on ImageNet R-50 with 1203 classes, up to 300 detections per image, multi-scale
training (shorter side 640-800), LVIS v1 through ``libra_d2.data.resumable_train_loader`` (RFS by
``repeat_threshold``; 0 turns it off) and Detectron2's LVISEvaluator, 90k iterations at batch 16
(LR 0.02 dropped at 60k and 80k). The Libra Mask R-CNN and LOCE lazy configs of this folder are
built on it. Run with projects/lazy_train_net.py."""

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.evaluation import LVISEvaluator
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from libra_d2.data import CheckedDatasetMapper, resumable_train_loader

NUM_CLASSES = 1203
model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.freeze_at = 2
model.roi_heads.num_classes = NUM_CLASSES
model.roi_heads.box_predictor.test_score_thresh = 0.0001
model.roi_heads.box_predictor.test_topk_per_image = 300

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train._target_ = resumable_train_loader  # exact resume; RFS by repeat_threshold
dataloader.train.dataset.names = "lvis_v1_train"
dataloader.train.mapper._target_ = CheckedDatasetMapper
dataloader.train.mapper.augmentations[0] = L(T.ResizeShortestEdge)(
    short_edge_length=(640, 672, 704, 736, 768, 800), max_size=1333, sample_style="choice"
)
dataloader.train.repeat_threshold = 0.001
dataloader.test.dataset.names = "lvis_v1_val"
dataloader.evaluator = L(LVISEvaluator)(
    dataset_name="${..test.dataset.names}", max_dets_per_image=300
)

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02
train = model_zoo.get_config("common/train.py").train
train.max_iter = 90000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[60000, 80000], num_updates=train.max_iter
    ),
    warmup_length=1000 / train.max_iter,
    warmup_factor=0.001,
)
train.output_dir = "output/lvis/lazy_mask_rcnn_R_50_FPN_1x"
