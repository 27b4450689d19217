"""Embedded-Gaussian non-local block (Wang et al., "Non-local Neural Networks"), as used by the
refine step of Libra R-CNN's Balanced Feature Pyramid (eq. 4 of the journal paper):

    y_i = x_i + W_out( sum_j softmax_j( theta(x_i)^T phi(x_j) * s ) g(x_j) )

theta, phi, g and W_out are 1x1 convolutions (C -> C/reduction -> C); s is 1/sqrt(C/reduction)
when ``use_scale`` else 1. W_out (or the norm after it) is zero-initialised, so the block is the
identity at initialisation and only learns a residual.

Memory: the attention is dense over all N = H*W positions, an N x N matrix per image. At the BFP
refine level P4 (stride 16) of an 800x1333 image padded to 800x1344 that is N = 50*84 = 4200, i.e.
4200^2 = 17.6M entries = 70.6 MB per image in fp32 for the softmax alone, and autograd keeps it for
backward (about 2x that per image with the gradient). ``forward`` therefore uses PyTorch's fused
``scaled_dot_product_attention`` when it exists (flash / memory-efficient kernels never store the
N x N matrix and need O(N) memory; PyTorch falls back to its math kernel where no fused kernel
applies), and a plain batched-matmul implementation otherwise (``use_sdpa=False`` forces it).
Both are one batched op over the batch: no Python loops over positions or images.
"""

import math

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm
from torch import nn

from ..utils.compat import HAS_SDPA

__all__ = ["NonLocal2d", "embedded_gaussian_attention"]


def embedded_gaussian_attention(theta, phi, g, scale=1.0, use_sdpa=True):
    """softmax(theta @ phi^T * scale, dim=-1) @ g for (B, N, C') tensors, batched over B.

    Args:
        theta, phi, g (Tensor): shape (B, N, C') — queries, keys and values at N positions.
        scale (float): multiplier of the dot products before the softmax.
        use_sdpa (bool): use the fused ``F.scaled_dot_product_attention`` when available.

    Returns:
        Tensor of shape (B, N, C').
    """
    if use_sdpa and HAS_SDPA:
        dim = theta.shape[-1]
        # SDPA scales by 1/sqrt(C') by default; fold our scale into the queries instead of passing
        # ``scale=`` (a keyword that older PyTorch 2.0 lacks).
        factor = scale * math.sqrt(dim)
        q = theta if factor == 1.0 else theta * factor
        out = F.scaled_dot_product_attention(q.unsqueeze(1), phi.unsqueeze(1), g.unsqueeze(1))
        return out.squeeze(1)
    attn = torch.bmm(theta, phi.transpose(1, 2))  # (B, N, N): the memory-hungry part
    if scale != 1.0:
        attn = attn * scale
    attn = attn.softmax(dim=-1)
    return torch.bmm(attn, g)


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection, identity at initialisation.

    Args:
        in_channels (int): channels C of the input (and output).
        reduction (int): inner channels are ``max(C // reduction, 1)``. Libra R-CNN uses 1.
        use_scale (bool): divide the dot products by sqrt(inner channels) before the softmax (as
            in mmcv's ``NonLocal2d`` default). The Libra R-CNN paper (eq. 4) and its reference
            BFP use no scaling: the BFP builds this block with ``use_scale=False``
            (``MODEL.BFP.NON_LOCAL_USE_SCALE``).
        norm (str): Detectron2 norm name (``get_norm``) applied after the output conv; "" for none.
            With a norm, the norm's weight and bias are zeroed instead of the conv, so gradients
            reach the conv without the 1/sqrt(eps) blow-up a zero input to BN/GN would cause.
        use_sdpa (bool): use ``F.scaled_dot_product_attention`` when available (see module doc).
    """

    def __init__(self, in_channels, reduction=1, use_scale=True, norm="", use_sdpa=True):
        super().__init__()
        if reduction < 1:
            raise ValueError("reduction must be >= 1, got {}".format(reduction))
        self.in_channels = in_channels
        self.inter_channels = max(in_channels // reduction, 1)
        self.use_scale = use_scale
        self.use_sdpa = use_sdpa

        self.g = nn.Conv2d(in_channels, self.inter_channels, kernel_size=1)
        self.theta = nn.Conv2d(in_channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, self.inter_channels, kernel_size=1)
        out_norm = get_norm(norm, in_channels)
        self.conv_out = Conv2d(
            self.inter_channels, in_channels, kernel_size=1, bias=out_norm is None, norm=out_norm
        )
        self.reset_parameters()

    def reset_parameters(self):
        for conv in (self.g, self.theta, self.phi):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        norm = self.conv_out.norm
        if norm is None:
            nn.init.zeros_(self.conv_out.weight)
            if self.conv_out.bias is not None:
                nn.init.zeros_(self.conv_out.bias)
        else:
            nn.init.normal_(self.conv_out.weight, std=0.01)
            # BN / GN / SyncBN: parameters; FrozenBN: buffers. Either way out = 0 * x_hat + 0.
            with torch.no_grad():
                for name in ("weight", "bias"):
                    t = getattr(norm, name, None)
                    if t is not None:
                        t.zero_()

    def forward(self, x):
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        phi = self.phi(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        g = self.g(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        scale = 1.0 / math.sqrt(self.inter_channels) if self.use_scale else 1.0
        y = embedded_gaussian_attention(theta, phi, g, scale=scale, use_sdpa=self.use_sdpa)
        y = y.transpose(1, 2).reshape(n, self.inter_channels, h, w)
        return x + self.conv_out(y)

    def extra_repr(self):
        return "in_channels={}, inter_channels={}, use_scale={}".format(
            self.in_channels, self.inter_channels, self.use_scale
        )
