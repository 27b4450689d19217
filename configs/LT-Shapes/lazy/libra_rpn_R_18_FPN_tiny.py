"""Libra RPN (proposals only) on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/libra_rpn_R_18_FPN_tiny.yaml): the plain tiny lazy config turned into a
proposal network by ``libra_d2.lazy.libra_rpn`` (BFP refined at P4, IoU-balanced negatives over
[0, 0.3), instance-balanced positives, Balanced L1), keeping 1000 proposals per test image for
AR@1000. Its evaluator reports Detectron2's box-proposal AR."""

from detectron2.config import LazyCall as L
from detectron2.evaluation import COCOEvaluator

from libra_d2.lazy import libra_rpn
from libra_d2.utils.compat import HAS_FAST_COCOEVAL

from .faster_rcnn_R_18_FPN_tiny import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

libra_rpn(model, refine_level=2, iou_upper=0.3)
model.proposal_generator.post_nms_topk = (500, 1000)
dataloader.evaluator = L(COCOEvaluator)(
    dataset_name="lt_shapes_val", use_fast_impl=HAS_FAST_COCOEVAL
)
train.output_dir = "output/lt_shapes/lazy_libra_rpn_R_18_FPN_tiny"
