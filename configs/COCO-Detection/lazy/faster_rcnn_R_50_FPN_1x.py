"""Faster R-CNN R-50-FPN, COCO 2017, 1x, as a lazy config (the twin of
configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml): Detectron2's lazy Mask R-CNN FPN without its
mask branch, ImageNet R-50 with its stem and res2 frozen, and the 1x schedule. The baseline of the
papers; the RGA and Libra R-CNN lazy configs of this folder are built on it."""

from detectron2 import model_zoo

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
train.output_dir = "output/coco/lazy_faster_rcnn_R_50_FPN_1x"
