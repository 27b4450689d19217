"""Libra Mask R-CNN R-50-FPN, COCO 2017, 1x, as a lazy config (the twin of
configs/COCO-InstanceSegmentation/libra_mask_rcnn_R_50_FPN_1x.yaml): Detectron2's lazy Mask R-CNN
FPN on ImageNet R-50 turned into Libra R-CNN by ``libra_d2.lazy.libra_rcnn`` (the Libra box
branch: BFP, Libra's sampling, Balanced L1, LGR-CE); the mask head is Mask R-CNN's."""

from detectron2 import model_zoo

from libra_d2.lazy import libra_rcnn
from libra_d2.utils.compat import HAS_FAST_COCOEVAL

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train

model.backbone.bottom_up.freeze_at = 2
libra_rcnn(model, cls_loss_type="lgr_ce")
dataloader.evaluator.use_fast_impl = HAS_FAST_COCOEVAL  # pycocotools' COCOeval without compiled ops
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "output/coco/lazy_libra_mask_rcnn_R_50_FPN_1x"
