"""Tiny Cascade R-CNN on LT-Shapes with R-CNN Gradient Annealing on every stage, as a lazy config
(twin of configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga.yaml): the plain tiny lazy config with
its box head, predictor and matcher turned into Detectron2's three-stage ``CascadeROIHeads``
(``libra_d2.lazy.cascade_roi_heads``), and RGA in ``train.hooks`` (one lambda for all stages).
"""

from detectron2.config import LazyCall as L

from libra_d2.engine.gradient_annealing import GradientAnnealing
from libra_d2.lazy import cascade_roi_heads

from .faster_rcnn_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train

cascade_roi_heads(model.roi_heads)

# RGA is a training hook, not a model part: train.hooks lists the hooks the launcher instantiates.
# Its default module prefixes cover every stage's box head and predictor (Detectron2 names them
# roi_heads.box_head.<k> / box_predictor.<k>). Overrides: train.hooks.0.constant=True.
train.hooks = [L(GradientAnnealing)(lambda0=7.0)]
# the whole-model clip of the YAML twin (why: its comment)
train.clip_gradients = dict(enabled=True, clip_type="full_model", clip_value=10.0, norm_type=2.0)
train.output_dir = "output/lt_shapes/lazy_cascade_rcnn_R_18_FPN_tiny_rga"
