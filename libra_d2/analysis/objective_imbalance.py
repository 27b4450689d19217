"""Objective imbalance: per class, the magnitude of the classifier's positive and negative gradients
(EFL's ``g_j`` is their accumulated ratio) and the mean score of its positives (LOCE's mean
classification score).

Two pure functions, one per classifier kind; both take the classifier's logits and labels as the
loss sees them and return per-class sums, so batches add up:

* softmax cross-entropy (Fast R-CNN heads): ``dL/dz_ij = p_ij - y_ij``, so a class's positive
  gradient is ``sum_{i: y_i = j} (1 - p_ij)`` and its negative gradient ``sum_{i: y_i != j} p_ij``
  (background RoIs included);
* sigmoid focal loss (RetinaNet, FCOS): the focal loss's analytic logit gradient
  (:func:`~libra_d2.layers.equalized_focal_loss.efl_logit_grad` with ``gamma_j = gamma``,
  ``w_j = 1``) summed over positive and negative entries, as EFL accumulates it.
"""

from typing import Dict

import torch
from torch.nn import functional as F

from ..layers.equalized_focal_loss import accumulate_gradient_statistics, efl_logit_grad

__all__ = ["sigmoid_gradient_statistics", "softmax_gradient_statistics", "summarise"]


def _empty(num_classes: int) -> Dict[str, torch.Tensor]:
    z = torch.zeros(num_classes, dtype=torch.float64)
    return {"pos_grad": z.clone(), "neg_grad": z.clone(), "score_sum": z.clone(), "positives": z}


def softmax_gradient_statistics(logits: torch.Tensor, labels: torch.Tensor) -> Dict:
    """``logits``: (R, K + 1) of a softmax classifier with background last; ``labels``: (R,) in
    [0, K]. Per foreground class: ``pos_grad``, ``neg_grad``, ``score_sum`` (sum of p_ij over its
    positives) and ``positives``."""
    num_classes = logits.shape[1] - 1
    out = _empty(num_classes)
    if logits.numel() == 0:
        return out
    probs = F.softmax(logits.detach().double(), dim=1)[:, :num_classes]
    onehot = F.one_hot(labels, num_classes + 1)[:, :num_classes].double()
    out["pos_grad"] = ((1.0 - probs) * onehot).sum(0)
    out["neg_grad"] = (probs * (1.0 - onehot)).sum(0)
    out["score_sum"] = (probs * onehot).sum(0)
    out["positives"] = onehot.sum(0)
    return out


def sigmoid_gradient_statistics(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Dict:
    """``logits``: (A, K) of a sigmoid classifier; ``labels``: (A,) in [0, K) for positives, K for
    background, -1 (or below) for ignored entries. The same statistics as
    :func:`softmax_gradient_statistics`, of the sigmoid focal loss."""
    num_classes = logits.shape[1]
    out = _empty(num_classes)
    valid = labels >= 0
    if not valid.any():
        return out
    x, y = logits[valid].detach().double(), labels[valid]
    onehot = F.one_hot(y, num_classes + 1)[:, :num_classes].double()
    gamma_j = torch.full((num_classes,), float(gamma), dtype=torch.float64)
    grad = efl_logit_grad(x, onehot, gamma_j, torch.ones_like(gamma_j), alpha=alpha)
    out["pos_grad"], out["neg_grad"] = (
        t.double() for t in accumulate_gradient_statistics(grad, onehot)
    )
    out["score_sum"] = (torch.sigmoid(x) * onehot).sum(0)
    out["positives"] = onehot.sum(0)
    return out


def add_statistics(total: Dict, batch: Dict) -> Dict:
    return {k: total[k] + batch[k] for k in total} if total else dict(batch)


def summarise(stats: Dict) -> Dict[str, list]:
    """Per class: ``ratio`` = positive / negative gradient, ``mean_score`` over its positives (nan
    where a class had no positive or no negative gradient)."""
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    ratio = torch.where(stats["neg_grad"] > 0, stats["pos_grad"] / stats["neg_grad"], nan)
    ratio = torch.where(stats["positives"] > 0, ratio, nan)
    score = torch.where(stats["positives"] > 0, stats["score_sum"] / stats["positives"], nan)
    return {
        "ratio": ratio.tolist(),
        "mean_score": score.tolist(),
        "positives": stats["positives"].tolist(),
    }
