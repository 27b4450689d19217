"""libra_d2 backbones. Importing this package registers them in Detectron2's BACKBONE_REGISTRY:

* ``build_resnet_bfp_backbone`` / ``build_retinanet_resnet_bfp_backbone``: Balanced Feature Pyramid
  on Detectron2's ResNet-FPN (P2-P6) / RetinaNet ResNet-FPN (P3-P7);
* ``build_resnet_pafpn_backbone`` / ``build_retinanet_resnet_pafpn_backbone``: PAFPN;
* ``build_resnet_bpafpn_backbone`` / ``build_retinanet_resnet_bpafpn_backbone``: Balanced PAFPN.
"""

from .balanced_fpn import (
    BalancedFeaturePyramid,
    balance_features,
    build_bfp_refine,
    build_resnet_bfp_backbone,
    build_retinanet_resnet_bfp_backbone,
)
from .pafpn import (
    PAFPN,
    build_resnet_bpafpn_backbone,
    build_resnet_pafpn_backbone,
    build_retinanet_resnet_bpafpn_backbone,
    build_retinanet_resnet_pafpn_backbone,
)

__all__ = [
    "BalancedFeaturePyramid",
    "PAFPN",
    "balance_features",
    "build_bfp_refine",
    "build_resnet_bfp_backbone",
    "build_retinanet_resnet_bfp_backbone",
    "build_resnet_pafpn_backbone",
    "build_resnet_bpafpn_backbone",
    "build_retinanet_resnet_pafpn_backbone",
    "build_retinanet_resnet_bpafpn_backbone",
]
