"""PAFPN: FPN with PANet's extra bottom-up path, and the "Balanced PAFPN" of Libra R-CNN (table 5).

Given the top-down outputs P_2..P_5 of Detectron2's FPN (the levels built from ``fpn.in_features``):

    N_2 = P_2,    N_{i+1} = conv3x3( conv3x3_stride2(N_i) + P_{i+1} )

as in the PANet paper (the downsampling conv reads the *output* N_i of the previous level). The
convs have no activation, like Detectron2's FPN convs (PANet puts a ReLU after each; mmdetection's
PAFPN has none and downsamples the pre-conv sum instead of N_i). Norm:
``get_norm(cfg.MODEL.FPN.NORM)``, with bias only when there is no norm, Xavier-initialised like FPN.

Extra top levels (FPN's ``top_block``): a block that reads an FPN output (``LastLevelMaxPool`` on
"p5", or ``LastLevelP6P7(..., in_feature="p5")``) is re-applied to the new N_5, so P6 stays "the
top block of the last pyramid level" as in FPN and in mmdetection's PAFPN (its max-pool P6 reads the
PAFPN output). The FPN computes the block once on the old P5 as well; for the max-pool this wasted
op is negligible. A block that reads a bottom-up feature (RetinaNet's ``LastLevelP6P7`` on "res5",
mmdetection's ``add_extra_convs="on_input"``) does not depend on P5, so its outputs are kept as
they are. Output names (p2..p6, or p3..p7 for RetinaNet), strides, channels and size divisibility
are the FPN's, so heads are unchanged.

Checkpoints: the wrapped FPN is the child ``fpn`` (keys ``fpn.<FPN key>``), the new convs are
``pafpn_downsample<s>`` / ``pafpn_output<s>`` (s = stage of the level they produce). Flat Detectron2
FPN keys load too (see :mod:`libra_d2.modeling.backbone.balanced_fpn`).
"""

import math

import fvcore.nn.weight_init as weight_init
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import (
    build_resnet_fpn_backbone,
    build_retinanet_resnet_fpn_backbone,
)

from .balanced_fpn import BalancedFeaturePyramid, WrappedFPN, _bfp_kwargs

__all__ = [
    "PAFPN",
    "build_resnet_pafpn_backbone",
    "build_resnet_bpafpn_backbone",
    "build_retinanet_resnet_pafpn_backbone",
    "build_retinanet_resnet_bpafpn_backbone",
]


class PAFPN(WrappedFPN):
    """Wraps a Detectron2 ``FPN`` (anything with ``in_features``, ``top_block`` and equal output
    channels on the levels of its ``output_shape()``) and adds PANet's bottom-up path."""

    def __init__(self, fpn, norm=""):
        """
        Args:
            fpn (Backbone): a Detectron2 FPN.
            norm (str): Detectron2 norm of the new convs ("" for none; "GN", "BN", "SyncBN", ...).
        """
        super().__init__()
        for attr in ("in_features", "top_block"):
            if not hasattr(fpn, attr):
                raise TypeError(
                    "PAFPN wraps a detectron2 FPN; {} has no {!r}".format(type(fpn), attr)
                )
        channels = self._wrap(fpn, "PAFPN")

        # levels built from the bottom-up features; the rest come from the top block
        self._num_pyramid_levels = len(fpn.in_features)
        use_bias = norm == ""
        downsample_convs, output_convs = [], []
        for name in self._out_features[1 : self._num_pyramid_levels]:
            stage = int(math.log2(self._out_feature_strides[name]))
            # 3x3 convs: stride 2 (N_i -> the next level's size), then stride 1 (output)
            down, out = (
                Conv2d(
                    channels,
                    channels,
                    kernel_size=3,
                    stride=stride,
                    padding=1,
                    bias=use_bias,
                    norm=get_norm(norm, channels),
                )
                for stride in (2, 1)
            )
            weight_init.c2_xavier_fill(down)
            weight_init.c2_xavier_fill(out)
            self.add_module("pafpn_downsample{}".format(stage), down)
            self.add_module("pafpn_output{}".format(stage), out)
            downsample_convs.append(down)
            output_convs.append(out)
        # plain lists (the modules are registered above under stage names, like FPN does)
        self.downsample_convs = downsample_convs
        self.output_convs = output_convs

        top_block = fpn.top_block
        pyramid_names = self._out_features[: self._num_pyramid_levels]
        self._top_block_input = (
            pyramid_names.index(top_block.in_feature)
            if top_block is not None and getattr(top_block, "in_feature", None) in pyramid_names
            else None
        )

    def forward(self, x):
        fpn_features = self.fpn(x)
        names = self._out_features
        outs = [fpn_features[names[0]]]  # N_2 = P_2
        for i, (down, out) in enumerate(zip(self.downsample_convs, self.output_convs)):
            outs.append(out(down(outs[-1]) + fpn_features[names[i + 1]]))
        if self._top_block_input is not None:
            outs.extend(self.fpn.top_block(outs[self._top_block_input]))
        else:
            outs.extend(fpn_features[k] for k in names[self._num_pyramid_levels :])
        assert len(outs) == len(names), (len(outs), names)
        return dict(zip(names, outs))


@BACKBONE_REGISTRY.register()
def build_resnet_pafpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet-PAFPN, P2-P6: Detectron2's ``build_resnet_fpn_backbone`` + the bottom-up path
    (norm ``MODEL.FPN.NORM``); P6 = max-pool of the new P5."""
    return PAFPN(build_resnet_fpn_backbone(cfg, input_shape), norm=cfg.MODEL.FPN.NORM)


@BACKBONE_REGISTRY.register()
def build_resnet_bpafpn_backbone(cfg, input_shape: ShapeSpec):
    """Balanced PAFPN (Libra R-CNN table 5): a BFP (``MODEL.BFP.*``) on the ResNet-PAFPN."""
    kwargs = _bfp_kwargs(cfg)
    return BalancedFeaturePyramid(build_resnet_pafpn_backbone(cfg, input_shape), **kwargs)


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_pafpn_backbone(cfg, input_shape: ShapeSpec):
    """RetinaNet ResNet-PAFPN, P3-P7: bottom-up path on P3-P5; P6/P7 come from C5 and are kept."""
    return PAFPN(build_retinanet_resnet_fpn_backbone(cfg, input_shape), norm=cfg.MODEL.FPN.NORM)


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_bpafpn_backbone(cfg, input_shape: ShapeSpec):
    """BFP on the RetinaNet ResNet-PAFPN (set ``MODEL.BFP.REFINE_LEVEL: 1`` to refine at P4)."""
    kwargs = _bfp_kwargs(cfg)
    return BalancedFeaturePyramid(build_retinanet_resnet_pafpn_backbone(cfg, input_shape), **kwargs)
