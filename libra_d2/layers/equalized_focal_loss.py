"""Equalized Focal Loss (EFL, Li et al., CVPR 2022), sigmoid form, for dense one-stage detectors.

For class ``j`` of an anchor with binary label ``y`` and logit ``x`` (paper eq. 2-4):

    EFL = alpha_t * w_j * (1 - p_t)^{gamma_j} * (-log p_t),
    gamma_j = gamma_b + s (1 - g_j),   w_j = gamma_j / gamma_b,
    alpha_t = alpha y + (1 - alpha)(1 - y),  p_t = sigmoid(x) if y = 1 else 1 - sigmoid(x),

where ``g_j`` is the accumulated ratio of positive to negative gradient magnitudes of class ``j``
(:class:`libra_d2.modeling.class_statistics.ClassGradientRatio`). ``gamma_j`` and ``w_j`` are
constants for the loss (no gradient flows into them). With ``s = 0`` EFL is exactly sigmoid focal
loss.

Layout: the class is the LAST dimension of the logits, as in Detectron2's RetinaNet after
``permute_to_N_HWA_K`` + ``cat(dim=1)`` (``(N, sum HWA, K)``, or ``(M, K)`` after ``[valid_mask]``).
The per-class focusing / weighting factors are broadcast over that dimension, and the gradient
statistics are the true ``|dL/dlogit|`` of the loss in that same layout (no channel reshaping, which
is where the reference implementation scrambles (anchor, class) for more than one anchor per
location).

Numerics: ``-log p_t`` and ``log(1 - p_t)`` come from ``F.softplus`` / ``F.logsigmoid`` /
``F.binary_cross_entropy_with_logits`` (stable forms), never from ``log(sigmoid(x))``; logits of
+-100 (and beyond) give finite losses and gradients. Everything is computed in (at least) fp32.
"""

import contextlib
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from libra_d2.modeling.class_statistics import ClassGradientRatio

__all__ = [
    "efl_focusing_factors",
    "equalized_focal_loss",
    "efl_logit_grad",
    "accumulate_gradient_statistics",
    "EqualizedFocalLoss",
    "EFLClassificationLoss",
]


def efl_focusing_factors(
    g: Tensor, gamma_b: float = 2.0, scale: float = 8.0
) -> Tuple[Tensor, Tensor]:
    """Per-class focusing factor ``gamma_j = gamma_b + scale (1 - g_j)`` and weighting factor
    ``w_j = gamma_j / gamma_b`` (paper eq. 3-4), from the gradient ratio ``g`` (clamped to [0, 1]).

    Returns ``(gamma_j, weight_j)``, detached, in ``g``'s floating dtype (at least fp32).
    """
    if gamma_b <= 0:
        raise ValueError(f"gamma_b must be positive, got {gamma_b}")
    g = g.detach()
    g = g.to(torch.promote_types(g.dtype, torch.float32)).clamp(0.0, 1.0)
    gamma_j = gamma_b + scale * (1.0 - g)
    return gamma_j, gamma_j / gamma_b


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half / bfloat16 / fp32 inputs, fp64 kept (for gradient checks)."""
    return torch.promote_types(dtype, torch.float32) if dtype.is_floating_point else torch.float32


def _check_shapes(logits: Tensor, targets: Tensor, gamma_j: Tensor, weight_j: Tensor) -> int:
    if logits.dim() < 1:
        raise ValueError("logits must have a class dimension (the last one)")
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} != logits shape {tuple(logits.shape)}"
        )
    num_classes = logits.shape[-1]
    if gamma_j.numel() != num_classes or weight_j.numel() != num_classes:
        raise ValueError(
            f"gamma_j ({gamma_j.numel()}) and weight_j ({weight_j.numel()}) must have one entry "
            f"per "
            f"class ({num_classes}, the last dimension of logits)"
        )
    return num_classes


def equalized_focal_loss(
    logits: Tensor,
    targets_onehot: Tensor,
    gamma_j: Tensor,
    weight_j: Tensor,
    alpha: float = 0.25,
    reduction: str = "sum",
) -> Tensor:
    """Sigmoid Equalized Focal Loss, written with differentiable torch ops (the reference form).

    Args:
        logits: ``(..., C)`` classification logits, class last.
        targets_onehot: same shape, binary {0, 1} (one-hot; all zeros for background anchors).
        gamma_j, weight_j: ``(C,)`` focusing and weighting factors (see
        :func:`efl_focusing_factors`);
            treated as constants (detached).
        alpha: positive/negative balance; ``alpha < 0`` disables it (``alpha_t = 1``), as in fvcore.
        reduction: ``"sum"`` (default; the caller divides by the number of positive anchors),
            ``"mean"`` or ``"none"``.
    Returns:
        The loss, computed in fp32 (fp64 for fp64 inputs).
    """
    _check_shapes(logits, targets_onehot, gamma_j, weight_j)
    dtype = _compute_dtype(logits.dtype)
    x = logits.to(dtype)
    t = targets_onehot.to(dtype)
    gamma = gamma_j.detach().to(device=x.device, dtype=dtype).reshape(-1)
    weight = weight_j.detach().to(device=x.device, dtype=dtype).reshape(-1)

    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")  # -log p_t, stable
    x_t = torch.where(t > 0.5, x, -x)
    log_one_minus_pt = F.logsigmoid(-x_t)  # log(1 - p_t), stable
    loss = ce * torch.exp(gamma * log_one_minus_pt) * weight
    if alpha >= 0:
        alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
        loss = alpha_t * loss

    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def _class_sums(values: Tensor, num_classes: int) -> Tensor:
    return values.reshape(-1, num_classes).sum(dim=0)


def _alpha_weight_terms(weight: Tensor, alpha: float, scale: Union[float, Tensor]):
    """Per-class ``alpha_t * w_j * scale`` for negatives (y = 0) and positives (y = 1)."""
    if alpha >= 0:
        return weight * ((1.0 - alpha) * scale), weight * (alpha * scale)
    return weight * scale, weight * scale


@torch.no_grad()
def _efl_core(
    x: Tensor,
    t: Tensor,
    gamma: Tensor,
    weight: Tensor,
    alpha: float,
    scale: Union[float, Tensor] = 1.0,
    need_loss: bool = True,
    need_stats: bool = False,
) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor], Optional[Tensor]]:
    """``scale * sum EFL``, its gradient and per-class |gradient| sums, over shared intermediates.

    ``x``, ``t``: contiguous ``(..., C)`` of one floating dtype; ``gamma``, ``weight``: ``(C,)`` of
    that dtype; ``scale``: a constant factor (``1 / normalizer``) folded into the per-class weights,
    so the gradient and the statistics are those of the scaled loss at no extra cost. Returns
    ``(loss | None, grad, pos_sum | None, neg_sum | None)``; the formula is derived in
    :func:`efl_logit_grad`. Four full-size temporaries (one of them the returned gradient); every
    other step runs in place.
    """
    num_classes = x.shape[-1]
    w_neg, w_pos = _alpha_weight_terms(weight, alpha, scale)

    z = torch.mul(x, t).mul_(-2.0).add_(x)  # z = -x_t = (1 - 2y) x
    ce = F.softplus(z)  # -log p_t = softplus(-x_t), stable
    log_q = z.sub_(ce)  # log(1 - p_t) = log sigmoid(-x_t) = z - softplus(z)
    coef = torch.mul(log_q, gamma)  # gamma_j log(1 - p_t)
    # * alpha_t w_j = exp(log w_neg + y (log w_pos - log w_neg)), in log space and in place. The
    # logs are clamped at -1000 (exp underflows to exactly 0 in fp32 and fp64), so zero weights
    # (alpha in {0, 1}, or a class switched off) give an exact 0 instead of inf - inf.
    log_w_neg = w_neg.log().clamp_(min=-1000.0)
    log_w_pos = w_pos.log().clamp_(min=-1000.0)
    coef.addcmul_(t, log_w_pos - log_w_neg).add_(log_w_neg).exp_()
    # coef = alpha_t w_j (1 - p_t)^gamma_j

    q = log_q.exp_()  # 1 - p_t
    magnitude = torch.neg(ce).exp_().mul_(ce)  # p_t (-log p_t)
    magnitude.mul_(gamma).add_(q).mul_(
        coef
    )  # |dl/dx| = alpha_t w (1-p_t)^g (g p_t (-log p_t) + 1 - p_t)

    # loss = sum alpha_t w (1-p_t)^g (-log p_t), written into the (now free) buffer of q; torch's
    # sum is pairwise, which keeps the fp32 total accurate over millions of terms (a BLAS dot does
    # not).
    loss = torch.mul(coef, ce, out=q).sum() if need_loss else None

    pos_sum = neg_sum = None
    if need_stats:
        pos_part = torch.mul(magnitude, t, out=ce)  # |g| on positives, 0 elsewhere
        pos_sum = _class_sums(pos_part, num_classes)
        magnitude.sub_(pos_part)  # |g| on negatives, exactly 0 on positives (y in {0, 1})
        neg_sum = _class_sums(magnitude, num_classes)
        grad = magnitude.sub_(pos_part)  # (1 - 2y) |g|
    else:
        grad = magnitude.addcmul_(magnitude, t, value=-2.0)  # (1 - 2y) |g|
    return loss, grad, pos_sum, neg_sum


def _prepare(logits: Tensor, targets: Tensor, gamma_j: Tensor, weight_j: Tensor):
    _check_shapes(logits, targets, gamma_j, weight_j)
    dtype = _compute_dtype(logits.dtype)
    x = logits.detach().to(dtype).contiguous()
    t = targets.detach().to(device=x.device, dtype=dtype).contiguous()
    gamma = gamma_j.detach().to(device=x.device, dtype=dtype).reshape(-1)
    weight = weight_j.detach().to(device=x.device, dtype=dtype).reshape(-1)
    return x, t, gamma, weight


def efl_logit_grad(
    logits: Tensor, targets: Tensor, gamma_j: Tensor, weight_j: Tensor, alpha: float = 0.25
) -> Tensor:
    """Analytic ``d(sum EFL)/d logits`` (same shape as ``logits``; class last), no autograd.

    Derivation, per element, with ``y`` in {0, 1}, ``s = 2y - 1``, ``x_t = s x``,
    ``p_t = sigmoid(x_t)``, ``q = 1 - p_t = sigmoid(-x_t)``, ``ce = -log p_t = softplus(-x_t)``
    and the loss ``l = alpha_t w_j q^{gamma_j} ce``:

        dq/dx_t  = -p_t q,          d ce/dx_t = -q,
        dl/dx_t  = alpha_t w_j [gamma_j q^{gamma_j - 1} (-p_t q) ce + q^{gamma_j} (-q)]
                 = -alpha_t w_j q^{gamma_j} (gamma_j p_t ce + q),
        dl/dx    = s dl/dx_t = (1 - 2y) alpha_t w_j q^{gamma_j} (gamma_j p_t ce + q).

    (``gamma_j = 0, w_j = alpha_t = 1`` gives ``sigmoid(x) - y``, the BCE gradient.) The sign is
    ``-`` for positives and ``+`` for negatives, and ``|dl/dx| = alpha_t w_j q^{gamma_j} (gamma_j
    p_t ce + q)``. All factors are computed stably: ``ce = softplus(-x_t)``, ``log q = -x_t - ce``
    (= log sigmoid(-x_t)), ``q^{gamma_j} = exp(gamma_j log q)``, ``p_t = exp(-ce)``.

    ``gamma_j`` and ``weight_j`` are constants: no gradient w.r.t. them is part of this. The
    caller's normalisation (``/ num_pos``) scales the gradient by the same factor.
    """
    x, t, gamma, weight = _prepare(logits, targets, gamma_j, weight_j)
    _, grad, _, _ = _efl_core(x, t, gamma, weight, alpha, need_loss=False, need_stats=False)
    return grad


def accumulate_gradient_statistics(
    grad: Tensor, targets_onehot: Tensor, valid_mask: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor]:
    """Per-class sums of ``|grad|`` over positive and over negative entries.

    Args:
        grad: ``(..., C)`` gradient of the loss w.r.t. the logits, class last (the tensor layout the
            loss saw, e.g. Detectron2's ``(N, sum HWA, K)``).
        targets_onehot: same shape, binary.
        valid_mask: optional boolean mask of shape ``grad.shape[:-1]`` (e.g. RetinaNet's
            ``gt_labels >= 0``); masked-out anchors are ignored.
    Returns:
        ``(pos_sum (C,), neg_sum (C,))`` in fp32 (fp64 for fp64 input): ``pos_j = sum |grad_ij|``
        over entries with ``y_ij = 1``, ``neg_j`` over entries with ``y_ij = 0``.
    """
    if targets_onehot.shape != grad.shape:
        raise ValueError(
            f"targets shape {tuple(targets_onehot.shape)} != grad shape {tuple(grad.shape)}"
        )
    num_classes = grad.shape[-1]
    if valid_mask is not None:
        if valid_mask.shape != grad.shape[:-1]:
            raise ValueError(
                f"valid_mask shape {tuple(valid_mask.shape)} != {tuple(grad.shape[:-1])}"
            )
        grad = grad[valid_mask]
        targets_onehot = targets_onehot[valid_mask]
    magnitude = grad.detach().to(_compute_dtype(grad.dtype)).abs()
    pos_part = magnitude * targets_onehot.to(device=magnitude.device, dtype=magnitude.dtype)
    pos_sum = _class_sums(pos_part, num_classes)
    neg_sum = _class_sums(magnitude.sub_(pos_part), num_classes)
    return pos_sum, neg_sum


class _EqualizedFocalLossSum(torch.autograd.Function):
    """``scale * sum EFL`` whose backward reuses the analytic gradient computed in forward.

    Outputs ``(loss, pos_sum, neg_sum)``; the last two are the per-class sums of
    ``|d loss / d x|`` over positives / negatives and are not differentiable.
    """

    @staticmethod
    def forward(ctx, x: Tensor, t: Tensor, gamma: Tensor, weight: Tensor, alpha: float, scale):
        loss, grad, pos_sum, neg_sum = _efl_core(
            x, t, gamma, weight, alpha, scale=scale, need_loss=True, need_stats=True
        )
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(pos_sum, neg_sum)
        return loss, pos_sum, neg_sum

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_pos: Tensor, _grad_neg: Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None, None, None, None


def _autocast_disabled(device_type: str):
    if device_type in ("cuda", "cpu"):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class EqualizedFocalLoss(nn.Module):
    """Sigmoid Equalized Focal Loss with its own per-class gradient statistics.

    Owns a :class:`ClassGradientRatio` (``self.statistics``; buffers ``statistics.pos_grad`` and
    ``statistics.neg_grad`` in the state dict). Each call:

    1. takes ``gamma_j, w_j`` from the current ratio ``g`` (g = 1, i.e. focal loss, before any
       update);
    2. computes ``sum EFL / normalizer`` in fp32 (autocast disabled), with a backward that reuses
       the analytic gradient computed in the same pass;
    3. in training (``self.training`` and the logits require grad, so a no-grad validation pass
       never touches the statistics), adds the per-class sums of the true ``|dL/dlogit|`` of the
       returned loss (``1 / normalizer`` included) over positives and negatives, all-reduced across
       processes (no-op on one process without a process group), so the NEXT call sees the updated
       ``g``.

    Args:
        num_classes: ``C``, the class (last) dimension of the logits.
        gamma_b: base focusing factor; ``scale``: ``s`` in ``gamma_j = gamma_b + s (1 - g_j)``;
        alpha: positive/negative balance (``< 0`` disables it).

    ``forward(logits, targets_onehot, normalizer=1.0, valid_mask=None)``: ``logits`` ``(..., C)``,
    ``targets_onehot`` of the same shape; ``normalizer`` is the caller's number of positive anchors
    (all-reduced / EMA-smoothed as the caller wants); ``valid_mask`` (``logits.shape[:-1]``) selects
    the anchors that take part (Detectron2: ``gt_labels >= 0``).
    """

    def __init__(
        self, num_classes: int, gamma_b: float = 2.0, scale: float = 8.0, alpha: float = 0.25
    ):
        super().__init__()
        if gamma_b <= 0:
            raise ValueError(f"gamma_b must be positive, got {gamma_b}")
        self.num_classes = int(num_classes)
        self.gamma_b = float(gamma_b)
        self.scale = float(scale)
        self.alpha = float(alpha)
        self.statistics = ClassGradientRatio(self.num_classes)

    def focusing_factors(self) -> Tuple[Tensor, Tensor]:
        """Current ``(gamma_j, weight_j)``, each ``(C,)`` fp32."""
        return efl_focusing_factors(self.statistics.ratio, self.gamma_b, self.scale)

    def forward(
        self,
        logits: Tensor,
        targets_onehot: Tensor,
        normalizer: Union[float, Tensor] = 1.0,
        valid_mask: Optional[Tensor] = None,
    ) -> Tensor:
        if logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[-1]} classes (last dim), expected {self.num_classes}"
            )
        if valid_mask is not None:
            logits = logits[valid_mask]
            targets_onehot = targets_onehot[valid_mask]
        gamma, weight = self.focusing_factors()
        dtype = _compute_dtype(logits.dtype)
        with _autocast_disabled(logits.device.type):
            x = logits.to(dtype)
            t = targets_onehot.detach().to(device=x.device, dtype=dtype).contiguous()
            gamma = gamma.to(device=x.device, dtype=dtype)
            weight = weight.to(device=x.device, dtype=dtype)
            if isinstance(normalizer, Tensor):
                scale = 1.0 / normalizer.detach().to(device=x.device, dtype=dtype)
            else:
                scale = 1.0 / float(normalizer)
            if not (x.requires_grad and torch.is_grad_enabled()):
                # evaluation / no-grad pass: the loss only, statistics untouched
                return (
                    equalized_focal_loss(x, t, gamma, weight, self.alpha, reduction="sum") * scale
                )
            loss, pos_sum, neg_sum = _EqualizedFocalLossSum.apply(
                x.contiguous(), t, gamma, weight, self.alpha, scale
            )
        if self.training:
            self.statistics.update(pos_sum, neg_sum)
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, gamma_b={self.gamma_b}, scale={self.scale}, "
            f"alpha={self.alpha}"
        )


class EFLClassificationLoss(EqualizedFocalLoss):
    """:class:`EqualizedFocalLoss` with the focusing and the weighting factor switchable (Table 3).

    ``use_focusing=False``: ``gamma_j = gamma_b`` for every class; ``use_weighting=False``:
    ``w_j = 1``. The statistics are accumulated either way (they are what the other factor uses).
    Same forward, buffers and state-dict keys as :class:`EqualizedFocalLoss`.
    """

    def __init__(
        self,
        num_classes: int,
        gamma_b: float = 2.0,
        scale: float = 8.0,
        alpha: float = 0.25,
        use_focusing: bool = True,
        use_weighting: bool = True,
    ):
        super().__init__(num_classes, gamma_b=gamma_b, scale=scale, alpha=alpha)
        self.use_focusing = bool(use_focusing)
        self.use_weighting = bool(use_weighting)

    def focusing_factors(self):
        gamma, weight = super().focusing_factors()
        if not self.use_focusing:
            gamma = torch.full_like(gamma, self.gamma_b)
        if not self.use_weighting:
            weight = torch.ones_like(weight)
        return gamma, weight

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", use_focusing={self.use_focusing}, use_weighting={self.use_weighting}"
        )
