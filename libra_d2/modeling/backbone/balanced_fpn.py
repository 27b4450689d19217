"""Balanced Feature Pyramid (BFP) of Libra R-CNN, as a Detectron2 ``Backbone``.

The feature-level balance (journal paper, section 3.2) has four steps on the pyramid {P_l}:

1. rescale every level to the size of the refine level: levels *finer* than it (lower index) are
   adaptive-max-pooled down, the refine level and the *coarser* levels are nearest-interpolated;
2. integrate: the balanced semantic feature is their plain average;
3. refine it: embedded-Gaussian non-local block (default), a 3x3 conv, or nothing;
4. strengthen: rescale it back to every level with the reverse ops (nearest interpolation up to
   the finer levels, adaptive max-pool down to the coarser ones; identity at the refine level) and
   add it to each original level as a residual.

:func:`balance_features` is that computation as a pure function of a list of tensors;
:class:`BalancedFeaturePyramid` wraps any FPN-like Detectron2 backbone and applies it to the
backbone's outputs, keeping names, strides, channels and size divisibility unchanged so that every
head works unchanged.

Checkpoints. The wrapped FPN is a child module named ``fpn``, so this module's own state-dict keys
are ``fpn.<FPN key>`` (e.g. ``backbone.fpn.fpn_lateral2.weight``,
``backbone.fpn.bottom_up.res2.0.conv1.weight``) plus ``refine.*`` for the refine module. Loading
also accepts the *flat* keys of the wrapped module itself (a plain Detectron2 FPN checkpoint:
``backbone.fpn_lateral2.weight``): they are redirected to ``fpn.`` while loading, so a Detectron2
FPN checkpoint loads into a BFP model with only the ``refine.*`` keys missing. This works through
``nn.Module.load_state_dict`` and therefore through ``DetectionCheckpointer``; Caffe2 / ImageNet
weights loaded with Detectron2's name-matching heuristics match by suffix as before. Redirection
nests (BFP wrapping PAFPN wrapping FPN accepts FPN, PAFPN and BFP-on-PAFPN checkpoints).
Caveats of redirected (flat) keys: fvcore's checkpointer compares shapes only for keys the model
has, so a flat key of the wrong shape raises in ``load_state_dict`` instead of being skipped with a
warning; and their per-module ``_metadata`` versions are not carried over (harmless for
Detectron2's layers: BN / FrozenBN only fill in buffers missing from very old checkpoints).
A BFP checkpoint does not load into a plain FPN model (the redirection is one-way).
"""

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import (
    build_resnet_fpn_backbone,
    build_retinanet_resnet_fpn_backbone,
)

from libra_d2.layers.non_local import NonLocal2d

__all__ = [
    "balance_features",
    "build_bfp_refine",
    "BalancedFeaturePyramid",
    "WrappedFPN",
    "build_resnet_bfp_backbone",
    "build_retinanet_resnet_bfp_backbone",
]

REFINE_TYPES = ("non_local", "conv", "none")


def balance_features(features, refine_level, refine_module=None):
    """Rescale, integrate, refine and strengthen a feature pyramid.

    Args:
        features (list[Tensor]): (N, C, H_l, W_l) maps ordered from high to low resolution, all
            with the same C. Sizes need not divide each other (odd sizes are fine: every resize
            targets an exact output size).
        refine_level (int): index into ``features`` of the level whose size is used to integrate.
        refine_module (callable or None): applied to the integrated (N, C, H, W) feature; None for
            no refinement.

    Returns:
        list[Tensor]: ``features[l] + rescale_back(refine(mean_l rescale(features[l])))``, with the
        shapes of ``features``.
    """
    num_levels = len(features)
    if num_levels == 0:
        raise ValueError("balance_features needs at least one feature map")
    if not 0 <= refine_level < num_levels:
        raise ValueError(
            "refine_level={} is outside the {} given levels".format(refine_level, num_levels)
        )
    gather_size = features[refine_level].shape[-2:]

    # 1-2. rescale to the refine level and integrate by averaging
    bsf = None
    for i, feat in enumerate(features):
        if i < refine_level:
            gathered = F.adaptive_max_pool2d(feat, output_size=gather_size)
        else:
            gathered = F.interpolate(feat, size=gather_size, mode="nearest")
        bsf = gathered if bsf is None else bsf + gathered
    bsf = bsf / num_levels

    # 3. refine
    if refine_module is not None:
        bsf = refine_module(bsf)

    # 4. strengthen: inverse rescaling, added as a residual
    outs = []
    for i, feat in enumerate(features):
        out_size = feat.shape[-2:]
        if i < refine_level:
            residual = F.interpolate(bsf, size=out_size, mode="nearest")
        else:
            residual = F.adaptive_max_pool2d(bsf, output_size=out_size)
        outs.append(feat + residual)
    return outs


def build_bfp_refine(
    refine_type, channels, norm="", non_local_reduction=1, non_local_use_scale=False
):
    """The refine module of the BFP.

    * "non_local": :class:`NonLocal2d` (residual, identity at init), reduction and scaling as given.
    * "conv": 3x3 conv (+ norm) + ReLU, Xavier-initialised like FPN's convs (the reference's
      ``ConvModule`` with its default ReLU; no residual).
    * "none": ``None`` (integrate + strengthen only, no parameters).
    """
    if refine_type == "non_local":
        return NonLocal2d(
            channels, reduction=non_local_reduction, use_scale=non_local_use_scale, norm=norm
        )
    if refine_type == "conv":
        conv_norm = get_norm(norm, channels)
        conv = Conv2d(
            channels,
            channels,
            kernel_size=3,
            padding=1,
            bias=conv_norm is None,
            norm=conv_norm,
            activation=F.relu,
        )
        weight_init.c2_xavier_fill(conv)
        return conv
    if refine_type == "none":
        return None
    raise ValueError(
        "Unknown BFP refine_type {!r}; expected one of {}".format(refine_type, REFINE_TYPES)
    )


def _redirect_flat_keys(module, state_dict, prefix, wrapped_name):
    """Rename ``prefix + k`` to ``prefix + wrapped_name + '.' + k`` for every key whose first
    component is not one of ``module``'s own children / parameters / buffers (i.e. a key written by
    the wrapped module when it was saved on its own). In place; keys already present are kept."""
    own = set(module._modules) | set(module._parameters) | set(module._buffers)
    target_prefix = prefix + wrapped_name + "."
    for key in list(state_dict.keys()):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest.split(".", 1)[0] in own:
            continue
        new_key = target_prefix + rest
        if new_key in state_dict:
            continue  # both spellings present: leave the flat one to be reported as unexpected
        state_dict[new_key] = state_dict.pop(key)


def _ordered_out_features(backbone):
    """The backbone's output names from its public ``output_shape()``, finest level first (the
    order of Detectron2's FPN outputs, p2 ... p6)."""
    shapes = backbone.output_shape()
    return sorted(shapes, key=lambda k: shapes[k].stride)


class WrappedFPN(Backbone):
    """Base of the backbones that wrap an FPN-like backbone as the child ``self.fpn`` and keep its
    outputs (names, strides, channels; Detectron2's ``Backbone.output_shape`` reports them), its
    ``size_divisibility`` and (where it has them) ``padding_constraints``. ``load_state_dict`` also
    accepts the wrapped module's flat keys (see module docstring)."""

    _wrapped_name = "fpn"

    def _wrap(self, fpn, what: str) -> int:
        """Take ``fpn``'s outputs as this backbone's; returns their channel count (a ValueError
        naming ``what`` if the levels differ)."""
        self.fpn = fpn
        shapes = fpn.output_shape()
        self._out_features = _ordered_out_features(fpn)
        self._out_feature_strides = {k: shapes[k].stride for k in self._out_features}
        self._out_feature_channels = {k: shapes[k].channels for k in self._out_features}
        channels = set(self._out_feature_channels.values())
        if len(channels) != 1:
            raise ValueError(
                "{} needs equal channels on all levels; got {}".format(
                    what, self._out_feature_channels
                )
            )
        return channels.pop()

    @property
    def size_divisibility(self):
        return self.fpn.size_divisibility

    @property
    def padding_constraints(self):
        # Detectron2 main's Backbone has it (FPN: size divisibility + square padding); 0.6 has not.
        return getattr(self.fpn, "padding_constraints", {})

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # nn.Module.load_state_dict calls this before it filters the dict for the children, so the
        # renamed keys reach the wrapped module.
        _redirect_flat_keys(self, state_dict, prefix, self._wrapped_name)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class BalancedFeaturePyramid(WrappedFPN):
    """Wraps an FPN-like backbone (Detectron2's ``FPN``, :class:`PAFPN`, ...) and balances its
    outputs with :func:`balance_features`, in the order of the FPN's levels (high to low
    resolution). Output names, strides and channels, ``size_divisibility`` and (where the wrapped
    backbone has it) ``padding_constraints`` are the wrapped backbone's.
    """

    def __init__(
        self,
        fpn,
        refine_level=2,
        refine_type="non_local",
        norm="",
        non_local_reduction=1,
        non_local_use_scale=False,
    ):
        """
        Args:
            fpn (Backbone): the FPN-like backbone to wrap; all its outputs must have the same
                channel count.
            refine_level (int): index into the wrapped backbone's output list of the level whose
                size the levels are integrated at (2 on P2-P6 = P4; use 1 on P3-P7 for P4).
            refine_type (str): "non_local", "conv" or "none".
            norm (str): Detectron2 norm for the refine module ("" for none).
            non_local_reduction (int): channel reduction of the non-local block.
            non_local_use_scale (bool): scale the non-local dot products by 1/sqrt(C').
        """
        super().__init__()
        if not isinstance(fpn, Backbone):
            raise TypeError(
                "BalancedFeaturePyramid wraps a detectron2 Backbone, got {}".format(type(fpn))
            )
        channels = self._wrap(fpn, "BFP (it averages the levels)")
        if not 0 <= refine_level < len(self._out_features):
            raise ValueError(
                "refine_level={} is not an index into the wrapped outputs {}".format(
                    refine_level, self._out_features
                )
            )
        if refine_type not in REFINE_TYPES:
            raise ValueError(
                "Unknown BFP refine_type {!r}; expected one of {}".format(refine_type, REFINE_TYPES)
            )
        self.refine_level = refine_level
        self.refine_type = refine_type
        self.refine = build_bfp_refine(
            refine_type,
            channels,
            norm=norm,
            non_local_reduction=non_local_reduction,
            non_local_use_scale=non_local_use_scale,
        )

    def forward(self, x):
        features = self.fpn(x)
        outs = balance_features(
            [features[k] for k in self._out_features], self.refine_level, self.refine
        )
        return dict(zip(self._out_features, outs))


def _bfp_kwargs(cfg):
    if "BFP" not in cfg.MODEL:
        raise KeyError(
            "cfg.MODEL.BFP is missing: call libra_d2.add_libra_config(cfg) before building"
        )
    bfp = cfg.MODEL.BFP
    return dict(
        refine_level=bfp.REFINE_LEVEL,
        refine_type=bfp.REFINE_TYPE,
        norm=bfp.NORM,
        non_local_reduction=bfp.NON_LOCAL_REDUCTION,
        non_local_use_scale=bfp.NON_LOCAL_USE_SCALE,
    )


@BACKBONE_REGISTRY.register()
def build_resnet_bfp_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's ResNet-FPN (P2-P6, P6 = max-pool of P5; ``build_resnet_fpn_backbone``, all
    ``MODEL.FPN.*`` / ``MODEL.RESNETS.*`` keys) wrapped in a BFP (``MODEL.BFP.*``; refine level
    2 = P4)."""
    kwargs = _bfp_kwargs(cfg)  # check the config before building the network
    return BalancedFeaturePyramid(build_resnet_fpn_backbone(cfg, input_shape), **kwargs)


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_bfp_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's RetinaNet ResNet-FPN (P3-P7, P6/P7 from C5 by ``LastLevelP6P7``;
    ``build_retinanet_resnet_fpn_backbone``) wrapped in a BFP. The level index counts from P3 here,
    so set ``MODEL.BFP.REFINE_LEVEL: 1`` to refine at P4 as the reference Libra RetinaNet does
    (the default 2 refines at P5)."""
    kwargs = _bfp_kwargs(cfg)
    return BalancedFeaturePyramid(build_retinanet_resnet_fpn_backbone(cfg, input_shape), **kwargs)
