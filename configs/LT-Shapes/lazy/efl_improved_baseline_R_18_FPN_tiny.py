"""EFL's improved one-stage baseline with EFL on LT-Shapes, tiny CPU setting, as a lazy config (twin
of configs/LT-Shapes/efl_improved_baseline_R_18_FPN_tiny.yaml): the lazy tiny EFL RetinaNet
(efl_retinanet_R_18_FPN_tiny.py) with the paper's improvements (sec. 4.1): ATSS assignment
(k = 18), the IoU branch (test score sigmoid(cls) x sigmoid(iou)), two anchor scales {6, 8} of
aspect ratio 1 per location, GIoU box loss, 100 warm-up iterations and a gradient clip at 35.
``model.efl.scale=0`` is the improved baseline with focal loss. Run with
projects/lazy_train_net.py."""

from detectron2.config import LazyCall as L

from libra_d2.modeling.atss_matcher import ATSSMatcher

from .efl_retinanet_R_18_FPN_tiny import dataloader, lr_multiplier, model, optimizer, train

model.anchor_matcher = L(ATSSMatcher)(topk=18)
model.iou_branch = True
model.head.iou_branch = True
# scales {6, 8} x the level's stride (halved for the tiny images, as the YAML), aspect ratio 1
model.anchor_generator.sizes = [[x * 3 / 4, x] for x in [32, 64, 128, 256, 512]]
model.anchor_generator.aspect_ratios = [1.0]
model.head.num_anchors = 2
model.box_reg_loss_type = "giou"
lr_multiplier.warmup_length = 100 / train.max_iter
train.clip_gradients = dict(enabled=True, clip_type="norm", clip_value=35.0, norm_type=2.0)
train.output_dir = "output/lt_shapes/lazy_efl_improved_baseline_R_18_FPN_tiny"
