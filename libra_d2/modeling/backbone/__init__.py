"""libra_d2 backbones. Importing this package registers them in Detectron2's BACKBONE_REGISTRY:

* ``build_resnet_bfp_backbone`` / ``build_retinanet_resnet_bfp_backbone``: Balanced Feature Pyramid
  on Detectron2's ResNet-FPN (P2-P6) / RetinaNet ResNet-FPN (P3-P7);
* ``build_resnet_pafpn_backbone`` / ``build_retinanet_resnet_pafpn_backbone``: PAFPN;
* ``build_resnet_bpafpn_backbone`` / ``build_retinanet_resnet_bpafpn_backbone``: Balanced PAFPN;
* ``build_fcos_resnet_fpn_backbone``: ResNet-FPN with P6 / P7 from P5 (FCOS).
"""

from .balanced_fpn import (
    BalancedFeaturePyramid,
    balance_features,
    build_bfp_refine,
    build_resnet_bfp_backbone,
    build_retinanet_resnet_bfp_backbone,
)
from .fcos_fpn import build_fcos_resnet_fpn_backbone
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
    "build_fcos_resnet_fpn_backbone",
    "build_resnet_bfp_backbone",
    "build_retinanet_resnet_bfp_backbone",
    "build_resnet_pafpn_backbone",
    "build_resnet_bpafpn_backbone",
    "build_retinanet_resnet_pafpn_backbone",
    "build_retinanet_resnet_bpafpn_backbone",
]
