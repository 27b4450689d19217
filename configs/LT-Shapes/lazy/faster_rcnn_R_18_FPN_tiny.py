"""Plain Faster R-CNN on LT-Shapes, tiny CPU setting, as a lazy config (the twin of
configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml). Run with projects/lazy_train_net.py. As the YAML,
it fine-tunes the locally pre-trained ResNet-18 (``train.init_checkpoint``, ``make pretrained``)
with FrozenBN, the stem and res2 frozen, and no gradient clip. Gradient clipping:
``train.clip_gradients`` (``SOLVER.CLIP_GRADIENTS``' options in lower case, applied by the launcher
with Detectron2's own clipper). From scratch, as ``libra_d2.checkpoint.TINY_FROM_SCRATCH`` does for
the YAML: ``train.init_checkpoint=""``, ``norm="BN"`` in the stem and stages, ``freeze_at=0`` and
``train.clip_gradients.enabled=True``."""

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import LVISEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from libra_d2.checkpoint import TINY_BACKBONE_WEIGHTS
from libra_d2.data import CheckedDatasetMapper as DatasetMapper
from libra_d2.data import resumable_train_loader

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
train = model_zoo.get_config("common/train.py").train
optimizer = model_zoo.get_config("common/optim.py").SGD

# the pre-trained ResNet-18 with FrozenBN, stem and res2 frozen; FPN 64 channels, no mask head
model.backbone.bottom_up = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
    stages=L(ResNet.make_default_stages)(depth=18, norm="FrozenBN"),
    out_features=["res2", "res3", "res4", "res5"],
    freeze_at=2,
)
model.backbone.out_channels = 64
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (500, 300)
model.roi_heads.num_classes = 32
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_in_features = None
model.roi_heads.mask_pooler = None
model.roi_heads.mask_head = None
model.pixel_std = [57.375, 57.120, 58.395]

image_size = 128
dataloader = dict(
    train=L(resumable_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="lt_shapes_train"),
        mapper=L(DatasetMapper)(
            is_train=True,
            augmentations=[
                L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size),
                L(T.RandomFlip)(horizontal=True),
            ],
            image_format="BGR",
        ),
        total_batch_size=8,
        aspect_ratio_grouping=False,
        num_workers=0,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="lt_shapes_val", filter_empty=False),
        mapper=L(DatasetMapper)(
            is_train=False,
            augmentations=[
                L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)
            ],
            image_format="BGR",
        ),
        num_workers=0,
    ),
    evaluator=L(LVISEvaluator)(dataset_name="lt_shapes_val"),
)

optimizer.lr = 0.02
optimizer.weight_decay = 1e-4
train.max_iter = 600
train.device = "cpu"
train.init_checkpoint = TINY_BACKBONE_WEIGHTS
# the per-parameter clip of the from-scratch option, off as in Base-Tiny.yaml
train.clip_gradients = dict(enabled=False, clip_type="norm", clip_value=1.0, norm_type=2.0)
train.eval_period = 0
train.checkpointer = dict(period=200, max_to_keep=100)
train.output_dir = "output/lt_shapes/lazy_faster_rcnn_R_18_FPN_tiny"
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[480, 560], num_updates=train.max_iter
    ),
    warmup_length=50 / train.max_iter,
    warmup_factor=0.001,
)
