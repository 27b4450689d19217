"""libra_d2 meta-architectures. Importing this package registers them in Detectron2's
META_ARCH_REGISTRY:

* ``LibraRetinaNet``: Detectron2's RetinaNet whose box loss also accepts Balanced L1 / LGR-L1
  (``MODEL.RETINANET.BBOX_REG_LOSS_TYPE``, ``MODEL.RETINANET.BALANCED_L1.*``).
"""
from .libra_retinanet import LibraRetinaNet

__all__ = ["LibraRetinaNet"]
