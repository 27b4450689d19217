"""Faster R-CNN R-50-FPN, COCO 2017, 1x, with R-CNN Gradient Annealing, as a lazy config (the twin
of configs/COCO-Detection/faster_rcnn_R_50_FPN_1x_rga.yaml): Detectron2's lazy Mask R-CNN FPN
without its mask branch, ImageNet R-50, the 1x schedule, and the GradientAnnealing hook in
``train.hooks`` (lambda 7 -> 1 over ``train.max_iter``), which projects/lazy_train_net.py adds.
Paper (Table 2, their re-implementation): 1x: 36.1 -> 37.3 box AP."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from libra_d2.engine.gradient_annealing import GradientAnnealing
from libra_d2.utils.compat import HAS_FAST_COCOEVAL

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train

# Faster R-CNN: no mask branch
model.roi_heads.mask_in_features = None
model.roi_heads.mask_pooler = None
model.roi_heads.mask_head = None
model.backbone.bottom_up.freeze_at = 2
dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.use_fast_impl = HAS_FAST_COCOEVAL  # pycocotools' COCOeval without compiled ops

train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
# RGA is a training hook, not a model part: train.hooks lists the hooks the launcher instantiates.
# GradientAnnealing's defaults (its constructor) are the paper's: lambda 7 -> 1 over train.max_iter
# on the box head and predictor. Overrides: train.hooks.0.constant=True; "train.hooks=[]" (off).
train.hooks = [L(GradientAnnealing)(lambda0=7.0)]
train.output_dir = "output/coco/lazy_faster_rcnn_R_50_FPN_1x_rga"
