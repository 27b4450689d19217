"""The FCOS backbone for YAML configs: Detectron2's ResNet-FPN with P6 and P7 computed from P5, as
FCOS (and Detectron2's lazy FCOS config, ``top_block.in_feature = "p5"``) has them; Detectron2's
``build_retinanet_resnet_fpn_backbone`` computes them from C5."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["build_fcos_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet-FPN (``MODEL.FPN``) with P6 / P7 from P5: P3-P7 for ``MODEL.FCOS.IN_FEATURES``."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
