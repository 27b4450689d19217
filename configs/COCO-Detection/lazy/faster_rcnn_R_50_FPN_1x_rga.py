"""Faster R-CNN R-50-FPN, COCO 2017, 1x, with R-CNN Gradient Annealing, as a lazy config (the twin
of configs/COCO-Detection/faster_rcnn_R_50_FPN_1x_rga.yaml): the lazy Faster R-CNN R-50-FPN 1x of
faster_rcnn_R_50_FPN_1x.py with the GradientAnnealing hook in ``train.hooks`` (lambda 7 -> 1 over
``train.max_iter``), which projects/lazy_train_net.py adds.
Paper (Table 2, their re-implementation): 1x: 36.1 -> 37.3 box AP."""

from detectron2.config import LazyCall as L

from libra_d2.engine.gradient_annealing import GradientAnnealing

from .faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

# RGA is a training hook, not a model part: train.hooks lists the hooks the launcher instantiates.
# GradientAnnealing's defaults (its constructor) are the paper's: lambda 7 -> 1 over train.max_iter
# on the box head and predictor. Overrides: train.hooks.0.constant=True; "train.hooks=[]" (off).
train.hooks = [L(GradientAnnealing)(lambda0=7.0)]
# the whole-model clip of the YAML twin (why: its comment); the configs importing this one keep it
train.clip_gradients = dict(enabled=True, clip_type="full_model", clip_value=35.0, norm_type=2.0)
train.output_dir = "output/coco/lazy_faster_rcnn_R_50_FPN_1x_rga"
