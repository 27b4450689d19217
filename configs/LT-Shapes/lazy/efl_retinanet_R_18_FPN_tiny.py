"""EFL RetinaNet on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml): the plain tiny lazy RetinaNet
(retinanet_R_18_FPN_tiny.py) with GroupNorm heads, Equalized Focal Loss (gamma_b 2, s 8, alpha
0.25, the "num_pos" normaliser), LR 0.02 and repeat-factor sampling at threshold 0.125
(``dataloader.train.repeat_threshold``; ``0`` turns it off). The EFL statistics are logged per
LT-Shapes frequency group (``frequency_groups`` from the dataset's metadata, as the YAML's
``from_config``). ``model.efl.scale=0`` is focal loss. Run with projects/lazy_train_net.py."""

from detectron2.config import LazyCall as L

from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.meta_arch import EFLRetinaNet
from libra_d2.modeling.meta_arch.efl_retinanet import EFLRetinaNetHead
from libra_d2.utils.compat import retinanet_head_norm

from .retinanet_R_18_FPN_tiny import (
    NUM_CLASSES,
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)  # noqa: F401

model._target_ = EFLRetinaNet
model.head._target_ = EFLRetinaNetHead
# GroupNorm heads: Detectron2 0.6's RetinaNetHead cannot build GN itself (retinanet_head_norm)
model.head.norm = L(retinanet_head_norm)(norm="GN")
model.head.iou_branch = False
model.efl = dict(gamma_b=2.0, scale=8.0, alpha=0.25, use_focusing=True, use_weighting=True)
model.loss_normalizer = "num_pos"
model.iou_branch = False
model.frequency_groups = L(training_frequency_groups)(
    dataset_names=["lt_shapes_train"], num_classes=NUM_CLASSES
)
model.log_period = 20

dataloader.train.repeat_threshold = 0.125  # RepeatFactorTrainingSampler, as the YAML
optimizer.lr = 0.02
train.output_dir = "output/lt_shapes/lazy_efl_retinanet_R_18_FPN_tiny"
