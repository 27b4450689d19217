"""Balanced L1 loss (Libra R-CNN, journal version, Sec. 3.3.1, Eq. 6-10).

Notation: ``x = input - target`` (elementwise), ``u = |x|``.

Intended gradient (Eq. 8, generalised to a transition point ``beta``; the paper uses
``beta = 1``)::

    dL/du = alpha * ln(b * u / beta + 1)     if u < beta
          = gamma                            otherwise

with ``alpha * ln(b + 1) = gamma`` (Eq. 10), i.e. ``b = exp(gamma / alpha) - 1``, so that the
gradient is continuous at ``u = beta``.

Loss = exact integral of that gradient with ``L(0) = 0``.  Substituting ``v = b s / beta + 1``
(``ds = beta / b dv``) and using ``int ln v dv = v ln v - v``::

    u < beta:   L(u) = int_0^u alpha ln(b s / beta + 1) ds
                     = (alpha / b) * (b u + beta) * ln(b u / beta + 1) - alpha * u
    u >= beta:  L(u) = L(beta) + gamma (u - beta)
                     = gamma * u + gamma * beta / b - alpha * beta

(``L(beta) = alpha beta (b + 1) / b * ln(b + 1) - alpha beta = gamma beta (b + 1) / b - alpha beta``
by Eq. 10.)  Equivalently ``L(u; beta) = beta * L(u / beta; 1)``: the same scale behaviour as
fvcore's smooth L1 (``0.5 x^2 / beta``).  Both the value and the gradient are continuous at
``u = beta``, and the gradient is 0 at ``u = 0``.

Relation to the public reference implementation, which uses
``alpha / b (b u + 1) ln(b u / beta + 1) - alpha u`` inside and ``gamma u + gamma / b - alpha beta``
outside:

* ``beta = 1``: identical (the formulas above coincide term by term; this is Eq. 9 of the paper
  with ``C = gamma / b - alpha``).
* ``beta != 1``: the reference writes ``(b u + 1)`` where the integral gives ``(b u + beta)``.
  Its inside value is larger than ours by ``alpha (1 - beta) / b * ln(b u / beta + 1)`` and its
  outside value by the constant ``gamma (1 - beta) / b``. Its gradient inside is
  ``alpha ln(b u / beta + 1) + alpha ((b u + 1) / (b u + beta) - 1)``: at ``u -> 0+`` it is
  ``alpha (1 / beta - 1)`` (not 0; 4.05 for beta = 0.11) and at ``u -> beta-`` it is
  ``gamma + alpha ((b beta + 1) / (beta (b + 1)) - 1)`` (not gamma), i.e. it jumps at ``beta``.
  Here the gradient is exactly Eq. 8 for every ``beta``.

Both are available, as ``form``: ``"continuous"`` (the above) and ``"reference"`` (the public
reference's formula, from which the published Libra RetinaNet numbers come); they are the same
function at ``beta = 1`` (every R-CNN / RPN setting).

``beta`` below 1e-5 (including 0) degrades to ``gamma * |x|`` (the ``u >= beta`` branch with
``beta = 0``), mirroring fvcore's smooth L1 threshold, so nothing is divided by ``beta``.
"""

import math

import torch
from torch import nn

__all__ = ["BALANCED_L1_FORMS", "balanced_l1_b", "balanced_l1_loss", "BalancedL1Loss"]

_SMALL_BETA = 1e-5
BALANCED_L1_FORMS = ("continuous", "reference")


def balanced_l1_b(alpha: float, gamma: float) -> float:
    """``b`` of Eq. 10: the solution of ``alpha * ln(b + 1) = gamma``, ``b = e^(gamma/alpha) - 1``.

    19.0855 for the default ``alpha = 0.5, gamma = 1.5``. This is the single place where ``b``
    is computed (LGR uses it too).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    return math.expm1(gamma / alpha)


def _check_form(form: str) -> None:
    if form not in BALANCED_L1_FORMS:
        raise ValueError(f"Balanced L1 form must be one of {BALANCED_L1_FORMS}, got {form!r}")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """fvcore-style reduction: "none" | "sum" | "mean" (mean of an empty tensor is 0)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def balanced_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.5,
    gamma: float = 1.5,
    beta: float = 1.0,
    reduction: str = "none",
    form: str = "reference",
) -> torch.Tensor:
    """Balanced L1 loss (Eq. 9, generalised to any ``beta`` as derived in the module docstring).

    ``u = |input - target|``::

        L = (alpha / b) (b u + beta) ln(b u / beta + 1) - alpha u    if u < beta
          = gamma u + gamma beta / b - alpha beta                    otherwise

    with ``b = e^(gamma / alpha) - 1`` (Eq. 10). ``dL/du`` is ``alpha ln(b u / beta + 1)`` inside
    and ``gamma`` outside (Eq. 8), continuous at ``beta``; ``L(0) = 0``. Equal to the reference
    implementation at ``beta = 1``; differs from it for ``beta != 1`` (see module docstring).
    ``beta < 1e-5`` gives ``gamma * u``.

    Args:
        input, target: tensors of the same (broadcastable) shape.
        alpha: inlier gradient promotion factor (smaller alpha = larger inlier gradients).
        gamma: outlier gradient (upper bound of the gradient).
        beta: transition point between the logarithmic and the linear part (>= 0).
        reduction: "none" | "sum" | "mean" (elementwise, like fvcore's ``smooth_l1_loss``).
        form: "reference" (default) or "continuous" (above): the public reference's
            ``(alpha / b) (b u + 1) ln(b u / beta + 1) - alpha u`` inside and
            ``gamma u + gamma / b - alpha beta`` outside (equal to "continuous" at ``beta = 1``).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    _check_form(form)
    b = balanced_l1_b(alpha, gamma)
    u = torch.abs(input - target)
    if beta < _SMALL_BETA:
        loss = gamma * u
    else:
        # Clamp so that the unused branch of torch.where sees finite values only (no NaN/inf
        # leaking into the gradient for huge |x|).
        u_in = torch.clamp(u, max=beta)
        c = 1.0 if form == "reference" else beta  # (b u + 1) in the reference, (b u + beta) here
        inside = (alpha / b) * (b * u_in + c) * torch.log1p(b * u_in / beta) - alpha * u_in
        outside = gamma * u + (gamma * c / b - alpha * beta)
        loss = torch.where(u < beta, inside, outside)
    return _reduce(loss, reduction)


class BalancedL1Loss(nn.Module):
    """Thin module around :func:`balanced_l1_loss` (Eq. 9)."""

    def __init__(
        self,
        alpha: float = 0.5,
        gamma: float = 1.5,
        beta: float = 1.0,
        reduction: str = "none",
        form: str = "reference",
    ):
        super().__init__()
        balanced_l1_b(alpha, gamma)  # validate early
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        _check_form(form)
        self.alpha = alpha
        self.gamma = gamma
        self.beta = beta
        self.reduction = reduction
        self.form = form

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return balanced_l1_loss(
            input, target, self.alpha, self.gamma, self.beta, self.reduction, self.form
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, beta={self.beta}, "
            f"reduction={self.reduction!r}"
        )
