"""EFL FCOS* R-50-FPN on LVIS v1, 2x, RFS, as a lazy config (the twin of
configs/LVISv1-Detection/efl_fcos_R_50_FPN_2x.yaml): Detectron2's lazy FCOS (center sampling, GIoU,
centerness, GN heads, P6 / P7 from P5) as ``EFLFCOS`` with Equalized Focal Loss (gamma_b 2, s 8,
alpha 0.25, the "num_pos" normaliser), LVIS v1 with repeat-factor sampling at t = 0.001 and
Detectron2's LVISEvaluator (up to 300 detections per image), and the paper's one-stage settings:
batch 16, LR 0.02, classifier prior 0.001, 6000 warm-up iterations, 180k iterations (steps at
120k and 160k) and whole-model gradient clipping at 35 (``train.clip_gradients``, applied by the
launcher). ``model.efl.scale=0`` is the FCOS* baseline. Paper (Table 6): 22.6 -> 23.4 AP,
12.7 -> 14.9 APr. Run with projects/lazy_train_net.py."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.evaluation import LVISEvaluator
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from libra_d2.data import CheckedDatasetMapper, resumable_train_loader
from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.meta_arch import EFLFCOS
from libra_d2.utils.compat import retinanet_head_norm

NUM_CLASSES = 1203
model = model_zoo.get_config("common/models/fcos.py").model
model._target_ = EFLFCOS
model.backbone.bottom_up.freeze_at = 2
model.num_classes = NUM_CLASSES
model.head.prior_prob = 0.001
# GroupNorm heads: Detectron2 0.6's RetinaNetHead (FCOSHead's base) cannot build GN itself
model.head.norm = L(retinanet_head_norm)(norm="GN")
model.test_score_thresh = 0.0001  # LVIS: a low threshold, as the YAML
model.max_detections_per_image = 300
model.efl = dict(gamma_b=2.0, scale=8.0, alpha=0.25, use_focusing=True, use_weighting=True)
model.loss_normalizer = "num_pos"
model.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lvis_v1_train"], num_classes=NUM_CLASSES
)
model.log_period = 20

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train._target_ = resumable_train_loader  # exact resume; RFS by repeat_threshold
dataloader.train.dataset.names = "lvis_v1_train"
dataloader.train.mapper._target_ = CheckedDatasetMapper
dataloader.train.mapper.use_instance_mask = False
dataloader.train.repeat_threshold = 0.001
dataloader.test.dataset.names = "lvis_v1_val"
dataloader.evaluator = L(LVISEvaluator)(
    dataset_name="${..test.dataset.names}", max_dets_per_image=300
)

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02
train = model_zoo.get_config("common/train.py").train
train.max_iter = 180000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.clip_gradients = dict(enabled=True, clip_type="full_model", clip_value=35.0, norm_type=2.0)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[120000, 160000], num_updates=train.max_iter
    ),
    warmup_length=6000 / train.max_iter,
    warmup_factor=0.001,
)
train.output_dir = "output/lvis/lazy_efl_fcos_R_50_FPN_2x"
