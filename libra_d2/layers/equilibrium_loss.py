"""Equilibrium Loss (EBL) of LOCE, "Exploring Classification Equilibrium in Long-Tailed
Object Detection" (Feng et al., ICCV 2021), eq. (3)-(4).

EBL is softmax cross-entropy with a pairwise margin driven by the mean classification score
vector ``s`` (C + 1 entries, background last, Detectron2 layout)::

    L(z, y) = log[1 + sum_{y' != y} exp(z_{y'} - z_y + delta_{yy'})],
    delta_{yy'} = log(s_{y'} / s_y).

Substituting delta gives ``exp((z_{y'} + log s_{y'}) - (z_y + log s_y))``, i.e. EBL is *exactly*
the ordinary cross-entropy evaluated on the score-adjusted logits ``z + log s``. That is how it is
computed here: ``F.cross_entropy(z + log(clamp(s)) - max(log(clamp(s))), y)`` (the max shift is a
constant per row, so it changes nothing mathematically; it makes equal scores give exactly plain
CE), which keeps PyTorch's stable log-sum-exp and never forms the ratio ``s_{y'} / s_y``.

Direction of the margin (for fixed logits): a class with a *lower* mean score gets a larger loss
when it is the ground truth (its adjusted logit ``z_y + log s_y`` is pushed down), and a negative
class with a *higher* mean score weighs more in the partition sum. Weak (tail) positives are
therefore pushed harder away from dominant negatives, and vice versa.

The score vector is treated as a constant (detached): it is a running statistic, not a
function of the parameters. It is supplied by the caller (see
``libra_d2.modeling.class_statistics.MeanClassScore``); the background entry is whatever that
vector holds (LOCE resets it to a small constant, 0.01, to punish false positives) -- this
function does not special-case it.

EBL is a *training* loss only. At test time the classifier's raw logits ``z`` are used with the
usual softmax; no ``log s`` adjustment is applied to the predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["equilibrium_loss", "adjust_logits"]

# log(1e-12) ~ -27.6: far below any realistic log score yet finite in fp32 (and harmless when
# added to logits of any sane magnitude).
_DEFAULT_EPS = 1e-12


def adjust_logits(logits: Tensor, mean_scores: Tensor, eps: float = _DEFAULT_EPS) -> Tensor:
    """Return ``logits + log(clamp(mean_scores, min=eps)) - max(log(...))`` in (at least) float32.

    ``mean_scores`` is detached; it broadcasts over the last dimension of ``logits``. Subtracting
    the max log-score is a per-row constant shift (softmax / cross-entropy are unchanged), keeps
    the adjustment <= 0, and makes the adjustment exactly 0.0 when all scores are equal, so that
    EBL is then bit-identical to plain cross-entropy on float32/float64 logits.
    """
    if mean_scores.dim() != 1 or mean_scores.numel() != logits.shape[-1]:
        raise ValueError(
            f"mean_scores must be a vector of {logits.shape[-1]} entries (C + 1, background "
            f"last), got shape {tuple(mean_scores.shape)}"
        )
    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    log_s = torch.log(
        mean_scores.detach().to(device=logits.device, dtype=compute_dtype).clamp(min=eps)
    )
    log_s = log_s - log_s.max()
    return logits.to(compute_dtype) + log_s


def equilibrium_loss(
    logits: Tensor,
    gt_classes: Tensor,
    mean_scores: Tensor,
    reduction: str = "mean",
    eps: float = _DEFAULT_EPS,
) -> Tensor:
    """Equilibrium Loss (LOCE eq. 3-4) in Detectron2's classification layout.

    Args:
        logits: (N, C + 1) class logits; column C is background.
        gt_classes: (N,) int64 labels in [0, C] (C = background).
        mean_scores: (C + 1,) mean classification scores ``s`` (background last). Used as a
            constant (detached); entries are clamped to ``eps`` before the log, so zeros are safe.
        reduction: "mean" (over the N rows, as Detectron2's ``cross_entropy``), "sum" or "none".
        eps: lower clamp of the scores.

    Returns:
        The loss, in float32 (or float64 for float64 logits). With equal scores everywhere this is
        exactly ``F.cross_entropy(logits, gt_classes, reduction=reduction)``. For N == 0 and
        "mean"/"sum" it returns ``0 * logits.sum()`` so that the graph (and DDP) still sees the
        classifier parameters, as Detectron2 does.

    Only for training: inference uses the unadjusted logits.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, C + 1), got shape {tuple(logits.shape)}")
    adjusted = adjust_logits(logits, mean_scores, eps)
    if logits.shape[0] == 0:
        if reduction == "none":
            return adjusted.sum(dim=1)  # empty (0,), still attached to the graph
        return adjusted.sum() * 0.0
    return F.cross_entropy(adjusted, gt_classes, reduction=reduction)
