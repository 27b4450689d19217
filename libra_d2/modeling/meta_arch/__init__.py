"""libra_d2 meta-architectures. Importing this package registers them in Detectron2's
META_ARCH_REGISTRY:

* ``LibraRetinaNet``: Detectron2's RetinaNet whose box loss also accepts Balanced L1 / LGR-L1
  (``MODEL.RETINANET.BBOX_REG_LOSS_TYPE``, ``MODEL.RETINANET.BALANCED_L1.*``).
* ``EFLRetinaNet``: LibraRetinaNet trained with Equalized Focal Loss, with the switches of EFL's
  improved baseline (ATSS, IoU branch; ``MODEL.EFL.*``).
* ``EFLFCOS``: Detectron2's FCOS (center sampling: FCOS*) trained with Equalized Focal Loss, from
  YAML (``MODEL.FCOS.*``, ``MODEL.EFL.*``).
"""

from .libra_retinanet import LibraRetinaNet
from .efl_retinanet import EFLRetinaNet
from .efl_fcos import EFLFCOS

__all__ = ["LibraRetinaNet", "EFLRetinaNet", "EFLFCOS"]
