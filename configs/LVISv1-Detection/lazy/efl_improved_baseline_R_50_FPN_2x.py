"""EFL on the improved one-stage baseline, R-50-FPN, LVIS v1, 2x, RFS, as a lazy config (the twin of
configs/LVISv1-Detection/efl_improved_baseline_R_50_FPN_2x.yaml): the lazy LVIS EFL RetinaNet of
efl_retinanet_R_50_FPN_2x.py with the paper's improvements (sec. 4.1): ATSS assignment (k = 18),
the IoU branch (test score sigmoid(cls) x sigmoid(iou)), anchor scales {6, 8} x stride of aspect
ratio 1, GIoU box loss and GroupNorm heads. ``model.efl.scale=0`` is the "Baseline" row with
focal loss. Paper (Table 2): 25.7 -> 27.5 AP. Run with projects/lazy_train_net.py."""

from detectron2.config import LazyCall as L

from libra_d2.modeling.atss_matcher import ATSSMatcher
from libra_d2.utils.compat import retinanet_head_norm

from .efl_retinanet_R_50_FPN_2x import dataloader, lr_multiplier, model, optimizer, train

model.anchor_matcher = L(ATSSMatcher)(topk=18)
model.iou_branch = True
model.head.iou_branch = True
model.head.norm = L(retinanet_head_norm)(norm="GN")
model.anchor_generator.sizes = [[x * 3 / 4, x] for x in [64, 128, 256, 512, 1024]]
model.anchor_generator.aspect_ratios = [1.0]
model.head.num_anchors = 2
model.box_reg_loss_type = "giou"
train.output_dir = "output/lvis/lazy_efl_improved_baseline_R_50_FPN_2x"
