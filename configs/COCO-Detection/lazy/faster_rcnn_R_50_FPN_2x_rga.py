"""The 2x schedule (180k iterations) of faster_rcnn_R_50_FPN_1x_rga.py, as a lazy config (the twin
of
configs/COCO-Detection/faster_rcnn_R_50_FPN_2x_rga.yaml). RGA anneals over the whole 2x schedule."""

from detectron2 import model_zoo

from .faster_rcnn_R_50_FPN_1x_rga import dataloader, model, optimizer, train  # noqa: F401

lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_2x
train.max_iter = 180000
train.output_dir = "output/coco/lazy_faster_rcnn_R_50_FPN_2x_rga"
