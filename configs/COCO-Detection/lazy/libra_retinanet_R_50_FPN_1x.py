"""Libra RetinaNet R-50-FPN, COCO 2017, 1x, as a lazy config (the twin of
configs/COCO-Detection/libra_retinanet_R_50_FPN_1x.yaml): Detectron2's lazy RetinaNet with the
class replaced by LibraRetinaNet, its FPN wrapped in a Balanced Feature Pyramid refined at P4 and
Balanced L1 (beta 0.11) as the box loss. Run with projects/lazy_train_net.py."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from libra_d2.modeling.backbone import BalancedFeaturePyramid
from libra_d2.modeling.meta_arch import LibraRetinaNet
from libra_d2.utils.compat import HAS_FAST_COCOEVAL

model = model_zoo.get_config("common/models/retinanet.py").model
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train

model._target_ = LibraRetinaNet
# BFP on P3-P7; index 1 (from P3) = P4, as the reference Libra RetinaNet
model.backbone = L(BalancedFeaturePyramid)(
    fpn=model.backbone, refine_level=1, refine_type="non_local"
)
model.backbone.fpn.bottom_up.freeze_at = 2
model.box_reg_loss_type = "balanced_l1"
model.balanced_l1 = dict(alpha=0.5, gamma=1.5, beta=0.11)

dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.use_fast_impl = HAS_FAST_COCOEVAL  # pycocotools' COCOeval without compiled ops
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "output/coco/lazy_libra_retinanet_R_50_FPN_1x"
