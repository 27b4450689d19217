"""Feature imbalance: the energy (mean squared activation) of each pyramid level, before and after
the Balanced Feature Pyramid.

For a backbone that is a :class:`~libra_d2.modeling.backbone.BalancedFeaturePyramid`, "before" is
its wrapped FPN's output and "after" the BFP's own (with its trained refine). For a plain FPN,
"after" is :func:`~libra_d2.modeling.backbone.balance_features` without refine: the
parameter-free integration BFP would add, at the refine level the Libra configs use (P4).
"""

from typing import Dict, List, Tuple

import torch

from ..modeling.backbone.balanced_fpn import BalancedFeaturePyramid, balance_features

__all__ = ["level_energy", "pyramid_energy", "relative_change"]


def level_energy(features: List[torch.Tensor]) -> List[float]:
    """Mean of ``x**2`` over batch, channels and positions, per level."""
    return [float(f.detach().double().pow(2).mean()) for f in features]


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """``||after - before|| / ||before||``: how much a module changes its input (0: identity)."""
    norm = before.detach().double().norm()
    return (
        float((after.detach().double() - before.detach().double()).norm() / norm) if norm else 0.0
    )


@torch.no_grad()
def pyramid_energy(backbone, images: torch.Tensor) -> Tuple[Dict, Dict]:
    """The backbone's outputs for a batch of normalised images, from one forward pass, and their
    statistics ``{"levels", "before", "after", "with_bfp", "refine", "refine_change"}``.
    ``refine_change`` is :func:`relative_change` of BFP's refine module on the integrated feature
    (None without one). The wrapped FPN's output and the refine's input and output are taken by
    forward hooks during that pass."""
    shapes = backbone.output_shape()
    names = sorted(shapes, key=lambda k: shapes[k].stride)
    if isinstance(backbone, BalancedFeaturePyramid):
        seen = {}

        def keep_fpn_output(module, inputs, output):  # a forward hook: returns None
            seen["fpn"] = output

        def keep_refine_change(module, inputs, output):
            seen["refine"] = relative_change(inputs[0], output)

        hooks = [backbone.fpn.register_forward_hook(keep_fpn_output)]
        if isinstance(backbone.refine, torch.nn.Module):
            hooks.append(backbone.refine.register_forward_hook(keep_refine_change))
        try:
            outputs = backbone(images)
        finally:
            for hook in hooks:
                hook.remove()
        before = [seen["fpn"][k] for k in names]
        after = [outputs[k] for k in names]
        with_bfp, refine, refine_change = True, backbone.refine_type, seen.get("refine")
    else:
        outputs = backbone(images)
        before = [outputs[k] for k in names]
        # P4 is the refine level of the Libra configs: index 2 on P2-P6, 1 on P3-P7.
        strides = [shapes[k].stride for k in names]
        refine_level = strides.index(16) if 16 in strides else len(names) // 2
        after = balance_features(before, refine_level)
        with_bfp, refine, refine_change = False, "none", None
    return outputs, {
        "levels": names,
        "before": level_energy(before),
        "after": level_energy(after),
        "with_bfp": with_bfp,
        "refine": refine,
        "refine_change": refine_change,
    }
