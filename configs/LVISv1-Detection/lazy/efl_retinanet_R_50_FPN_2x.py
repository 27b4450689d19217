"""EFL RetinaNet R-50-FPN on LVIS v1, 2x, RFS, as a lazy config (the twin of
configs/LVISv1-Detection/efl_retinanet_R_50_FPN_2x.yaml): Detectron2's lazy RetinaNet as
``EFLRetinaNet`` with Equalized Focal Loss (gamma_b 2, s 8, alpha 0.25, the "num_pos" normaliser)
and classifier prior 0.001, up to 300 detections per image, on the LVIS data, optimizer, schedule
and gradient clip of efl_fcos_R_50_FPN_2x.py (the paper's one-stage settings: RFS at t = 0.001,
batch 16, LR 0.02, 6000 warm-up iterations, 180k iterations, whole-model clip at 35).
``model.efl.scale=0`` is the focal-loss RetinaNet baseline. Paper (Table 6): 18.5 -> 20.5 AP.
Run with projects/lazy_train_net.py."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.meta_arch import EFLRetinaNet
from libra_d2.modeling.meta_arch.efl_retinanet import EFLRetinaNetHead

from .efl_fcos_R_50_FPN_2x import NUM_CLASSES, dataloader, lr_multiplier, optimizer, train

model = model_zoo.get_config("common/models/retinanet.py").model
model._target_ = EFLRetinaNet
model.backbone.bottom_up.freeze_at = 2
model.num_classes = NUM_CLASSES
model.head._target_ = EFLRetinaNetHead
model.head.prior_prob = 0.001
model.head.iou_branch = False
model.test_score_thresh = 0.0001  # LVIS: a low threshold, as the YAML
model.max_detections_per_image = 300
model.efl = dict(gamma_b=2.0, scale=8.0, alpha=0.25, use_focusing=True, use_weighting=True)
model.loss_normalizer = "num_pos"
model.iou_branch = False
model.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lvis_v1_train"], num_classes=NUM_CLASSES
)
model.log_period = 20
train.output_dir = "output/lvis/lazy_efl_retinanet_R_50_FPN_2x"
