"""``scale_gradient``: the identity in the forward pass, the gradient multiplied by a constant in
the backward pass (Cascade R-CNN divides the gradient that each stage sends to the shared
features by the number of stages)."""

import torch

__all__ = ["scale_gradient"]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged; the gradient flowing back through it is multiplied by ``scale``."""
    return _ScaleGradient.apply(x, float(scale))
