"""Feature imbalance: the energy (mean squared activation) of each pyramid level, before and after
the Balanced Feature Pyramid.

For a backbone that is a :class:`~libra_d2.modeling.backbone.BalancedFeaturePyramid`, "before" is
its wrapped FPN's output and "after" the BFP's own (with its trained refine). For a plain FPN,
"after" is :func:`~libra_d2.modeling.backbone.balance_features` without refine: the
parameter-free integration BFP would add, at the refine level the Libra configs use (P4).
"""

from typing import Dict, List

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
def pyramid_energy(backbone, images: torch.Tensor) -> Dict:
    """``{"levels", "before", "after", "with_bfp", "refine", "refine_change"}`` for a batch of
    normalised images; ``refine_change`` is :func:`relative_change` of BFP's refine module on the
    integrated feature (None without one)."""
    refine_change = None
    if isinstance(backbone, BalancedFeaturePyramid):
        names = backbone.output_shape()
        names = sorted(names, key=lambda k: names[k].stride)
        fpn_out = backbone.fpn(images)
        before = [fpn_out[k] for k in names]
        seen = []
        hook = None
        if isinstance(backbone.refine, torch.nn.Module):
            hook = backbone.refine.register_forward_hook(
                lambda module, inputs, output: seen.append(relative_change(inputs[0], output))
            )
        try:
            after_dict = backbone(images)
        finally:
            if hook is not None:
                hook.remove()
        after = [after_dict[k] for k in names]
        with_bfp, refine = True, backbone.refine_type
        refine_change = seen[0] if seen else None
    else:
        shapes = backbone.output_shape()
        names = sorted(shapes, key=lambda k: shapes[k].stride)
        out = backbone(images)
        before = [out[k] for k in names]
        # P4 is the refine level of the Libra configs: index 2 on P2-P6, 1 on P3-P7.
        strides = [shapes[k].stride for k in names]
        refine_level = strides.index(16) if 16 in strides else len(names) // 2
        after = balance_features(before, refine_level)
        with_bfp, refine = False, "none"
    return {
        "levels": names,
        "before": level_energy(before),
        "after": level_energy(after),
        "with_bfp": with_bfp,
        "refine": refine,
        "refine_change": refine_change,
    }
