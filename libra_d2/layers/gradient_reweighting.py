"""Logarithmic Gradient Re-weighting, LGR (Libra R-CNN, journal version, Sec. 3.3.2, Eq. 11-19).

LGR maps the magnitude ``g`` of a per-sample gradient through the balanced-L1 gradient curve
(Eq. 8)::

    G_b(g) = alpha * ln(b * g + 1)   if g < 1
           = gamma                   otherwise,       b = e^(gamma / alpha) - 1  (Eq. 10)

and multiplies the sample's loss by the DETACHED ratio ``rho = G_b(g) / g`` (Eq. 13, 18), so the
gradient of ``rho * loss`` has magnitude ``G_b(g)`` while the loss keeps its usual form.

* LGR-L1 (Eq. 11-14): ``rho * smooth_l1``; its gradient equals the balanced L1 gradient.
* LGR-CE (Eq. 15-19): ``rho_t * CE`` with ``g = |p_t - 1|``.

:func:`lgr_weight` is the single implementation of ``rho`` used by both; ``b`` comes from
:func:`libra_d2.layers.balanced_l1.balanced_l1_b`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .balanced_l1 import _SMALL_BETA, BalancedL1Loss, _reduce, balanced_l1_b

__all__ = [
    "lgr_weight",
    "lgr_l1_loss",
    "lgr_cross_entropy",
    "LGRL1Loss",
    "LGRCrossEntropyLoss",
]

# Where b*g is below this, rho uses its Taylor expansion alpha*b*(1 - bg/2 + (bg)^2/3): the relative
# truncation error is about (bg)^3 / 4 < 3e-13, and g = 0 needs no division.
_SMALL_BG = 1e-4


def lgr_weight(grad_norm: torch.Tensor, alpha: float = 0.5, gamma: float = 1.5) -> torch.Tensor:
    """LGR weight ``rho = G_b(g) / g`` (Eq. 13 and Eq. 18), always DETACHED.

    ``g = grad_norm`` is the magnitude of the original per-sample gradient (``|x| / beta``
    clipped at 1 for smooth L1, Eq. 12; ``|p_t - 1|`` for softmax CE, Eq. 17)::

        rho(g) = alpha * ln(b g + 1) / g    for 0 < g < 1
               = gamma / g                  for g >= 1      (rho(1) = gamma by Eq. 10)
        rho(0) = alpha * b                  (the limit g -> 0; a Taylor series for b g < 1e-4)

    ``rho`` decreases monotonically from ``alpha * b`` (9.54 for 0.5/1.5) at ``g = 0`` to ``gamma``
    at ``g = 1``: small gradients (accurate / well-classified samples) are promoted the most.
    The result carries no autograd history, so ``rho * loss`` back-propagates as a constant weight.
    """
    b = balanced_l1_b(alpha, gamma)
    g = grad_norm.detach().abs()
    small = b * g < _SMALL_BG
    g_safe = torch.where(small, torch.ones_like(g), g)
    inlier = alpha * torch.log1p(b * torch.clamp(g_safe, max=1.0)) / g_safe
    outlier = gamma / g_safe
    rho = torch.where(g_safe < 1.0, inlier, outlier)
    bg = b * g
    rho = torch.where(small, alpha * b * (1.0 - bg / 2.0 + bg * bg / 3.0), rho)
    return rho


def _smooth_l1(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Smooth L1 of Eq. 11 with transition point ``beta`` (fvcore's convention)."""
    u = torch.abs(x)
    if beta < _SMALL_BETA:
        return u
    return torch.where(u < beta, 0.5 * u * u / beta, u - 0.5 * beta)


def lgr_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.5,
    gamma: float = 1.5,
    beta: float = 1.0,
    reduction: str = "none",
) -> torch.Tensor:
    """LGR-L1 loss: the "simple equivalent variant of balanced L1" (Eq. 11-14).

    With ``u = |input - target|``, smooth L1 ``L_s`` (Eq. 11, fvcore convention with ``beta``:
    ``0.5 u^2 / beta`` if ``u < beta`` else ``u - 0.5 beta``) and its gradient magnitude
    ``G_s = min(u / beta, 1)`` (Eq. 12)::

        L = rho * L_s,     rho = lgr_weight(G_s) = G_b / G_s   (detached, Eq. 13-14)

        rho = alpha * ln(b u / beta + 1) * beta / u   if u < beta   (alpha * b at u = 0)
            = gamma                                   otherwise

    so ``dL/du = rho * G_s = alpha ln(b u / beta + 1)`` inside and ``gamma`` outside: exactly the
    gradient of :func:`balanced_l1_loss` with the same ``beta``. The loss VALUE differs from
    balanced L1 (e.g. ``gamma (u - beta / 2)`` outside); only gradients are equivalent.
    ``beta < 1e-5`` gives ``gamma * u`` (smooth L1 -> L1, ``G_s = 1``).

    Args: as :func:`balanced_l1_loss`; ``reduction`` is "none" | "sum" | "mean" (elementwise).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    x = input - target
    loss_s = _smooth_l1(x, beta)
    with torch.no_grad():
        u = torch.abs(x)
        g = torch.ones_like(u) if beta < _SMALL_BETA else torch.clamp(u / beta, max=1.0)
        rho = lgr_weight(g, alpha, gamma)
    return _reduce(rho * loss_s, reduction)


def lgr_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.5,
    gamma: float = 1.5,
    reduction: str = "mean",
    ignore_index: int = -1,
) -> torch.Tensor:
    """LGR-CE: softmax cross-entropy re-weighted per sample (Eq. 15-19).

    Detectron2 layout: ``logits`` (N, C+1) with background at index C, ``targets`` (N,) int64 in
    [0, C] (entries equal to ``ignore_index`` are skipped). With ``p = softmax(logits)`` and
    ``p_t`` the probability of the true class::

        L_i = -rho_t * log(p_t),    rho_t = lgr_weight(|p_t - 1|)
                                          = alpha * ln(b (1 - p_t) + 1) / (1 - p_t)   (detached)

    Only the true-class term of Eq. 19 survives (``t_c = 0`` elsewhere), so the gradient of
    sample i w.r.t. every logit is ``rho_t (p_c - t_c)``; on the true-class logit its magnitude is
    ``alpha ln(b (1 - p_t) + 1)`` instead of ``1 - p_t`` (Eq. 17-18). ``rho_t -> alpha * b`` as
    ``p_t -> 1`` (handled stably) and ``rho_t = gamma`` at ``p_t = 0``.

    What the weight does: it UP-weights well-classified samples (p_t near 1, small gradient) the
    most — the opposite of focal loss, which down-weights them. The paper argues this suits
    two-stage detectors, where ~512 sampled RoIs per image contain comparable numbers of easy
    and hard samples (unlike the ~100k dense anchors of one-stage detectors). Note the weight is
    always >= gamma, so the overall loss scale grows (between gamma and alpha * b times CE).
    The paper's best LGR-CE setting is alpha = 0.8, gamma = 1.0 (Table 7); the defaults here are
    the balanced-L1 ones.

    Reductions: "none" -> (N,) (0 for ignored rows); "sum"; "mean" -> sum / number of non-ignored
    rows, i.e. the same normalisation as Detectron2's ``cross_entropy`` over the sampled RoIs
    (sum / N when nothing is ignored). An empty batch gives 0 (connected to the graph).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, C+1), got shape {tuple(logits.shape)}")
    targets = targets.long()
    valid = targets != ignore_index
    ce = F.cross_entropy(logits, targets, reduction="none", ignore_index=ignore_index)
    with torch.no_grad():
        safe_t = torch.where(valid, targets, torch.zeros_like(targets))
        z = logits.detach()
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()
        log_p_t = F.log_softmax(z, dim=1).gather(1, safe_t[:, None])[:, 0]
        # 1 - p_t computed as -expm1(log p_t): accurate when p_t is close to 1.
        g = -torch.expm1(log_p_t)
        rho = lgr_weight(g, alpha, gamma).to(ce.dtype)
        rho = torch.where(valid, rho, torch.zeros_like(rho))
    loss = rho * ce
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        n = valid.sum()
        if n == 0:
            return 0.0 * logits.sum()
        return loss.sum() / n
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


class LGRL1Loss(BalancedL1Loss):
    """Thin module around :func:`lgr_l1_loss` (Eq. 14); same arguments as
    :class:`BalancedL1Loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lgr_l1_loss(input, target, self.alpha, self.gamma, self.beta, self.reduction)


class LGRCrossEntropyLoss(nn.Module):
    """Thin module around :func:`lgr_cross_entropy` (Eq. 19)."""

    def __init__(
        self,
        alpha: float = 0.5,
        gamma: float = 1.5,
        reduction: str = "mean",
        ignore_index: int = -1,
    ):
        super().__init__()
        balanced_l1_b(alpha, gamma)  # validate early
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return lgr_cross_entropy(
            logits, targets, self.alpha, self.gamma, self.reduction, self.ignore_index
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, "
            f"ignore_index={self.ignore_index}"
        )
