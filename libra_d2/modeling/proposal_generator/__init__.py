"""libra_d2 proposal generators. Importing this package registers them in Detectron2's
PROPOSAL_GENERATOR_REGISTRY:

* ``LibraRPN``: Detectron2's RPN with IoU-balanced / instance-balanced anchor sampling
  (``MODEL.RPN.SAMPLER.*``) and Balanced L1 / LGR-L1 box losses (``MODEL.RPN.BBOX_REG_LOSS_TYPE``).
"""

from .libra_rpn import LibraRPN

__all__ = ["LibraRPN"]
