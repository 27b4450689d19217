"""Equalized Focal Loss for any sigmoid dense head: the one piece the EFL detectors share
(``EFLRetinaNet``, ``EFLFCOS``).

A dense detector in Detectron2's layout predicts, per level, ``(N, Hi*Wi*A, C)`` class logits
(``DenseDetector._transpose_dense_predictions``) and labels every anchor (or anchor point) with a
class in ``[0, C)``, ``C`` for background or -1 for ignored. EFL then needs the same four things
whatever the detector:

* :func:`efl_loss_kwargs`: the loss's settings from ``MODEL.EFL``;
* :func:`loss_normalizer`: the divisor, "num_pos" (the positives of the whole batch, all-reduced
  over the processes, / world size, at least 1; the paper's) or the detector's own EMA;
* :func:`dense_efl_loss`: EFL summed over the valid anchors' ``(anchor, class)`` logits / the
  normaliser. The gradient statistics of :class:`~libra_d2.layers.EFLClassificationLoss` are
  accumulated in the same pass, per class (the last dimension), so their layout is the same for
  anchor boxes and anchor points, and synchronised across processes by the statistics module;
* :func:`log_efl_statistics`: ``g_j``, ``gamma_j`` and ``w_j`` per frequency group and overall to
  the ``EventStorage``.

The statistics live in the detector's ``efl`` module (its buffers ``efl.statistics.pos_grad`` /
``neg_grad``), so checkpoints save and ``--resume`` restores them.
"""

from typing import Callable, Dict, List, Optional, Sequence

import torch.nn.functional as F
from detectron2.layers import cat
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import Tensor

from ..layers.equalized_focal_loss import EFLClassificationLoss
from ..utils.comm import all_reduce_sum
from .class_statistics import log_to_storage

__all__ = [
    "LOSS_NORMALIZERS",
    "check_frequency_groups",
    "check_loss_normalizer",
    "dense_efl_loss",
    "efl_loss_kwargs",
    "log_efl_statistics",
    "loss_normalizer",
]

#: "num_pos": the global batch's positives / world size (the paper's); "ema": the detector's EMA.
LOSS_NORMALIZERS = ("num_pos", "ema")


def efl_loss_kwargs(node) -> Dict:
    """The keyword arguments of :class:`EFLClassificationLoss` from a ``MODEL.EFL`` node."""
    if node is None:
        raise KeyError(
            "The MODEL.EFL config node is missing: call libra_d2.add_libra_config(cfg) before "
            "building the model"
        )
    return {
        "gamma_b": node.GAMMA_B,
        "scale": node.SCALE,
        "alpha": node.FOCAL_ALPHA,
        "use_focusing": node.USE_FOCUSING,
        "use_weighting": node.USE_WEIGHTING,
    }


def check_loss_normalizer(kind: str) -> str:
    """``kind`` if it is one of :data:`LOSS_NORMALIZERS`, else a ValueError naming the key."""
    if kind not in LOSS_NORMALIZERS:
        raise ValueError(f"MODEL.EFL.LOSS_NORMALIZER={kind!r}; expected one of {LOSS_NORMALIZERS}")
    return kind


def loss_normalizer(kind: str, num_pos: Tensor, ema: Callable[[Tensor], Tensor]) -> Tensor:
    """The losses' divisor as a tensor (no host synchronisation). ``num_pos``: this process's
    positive anchors (a 0-d tensor); ``ema``: the detector's EMA update, used for "ema"."""
    if kind == "ema":
        return ema(num_pos)
    total = num_pos.double().reshape(1)
    world_size = comm.get_world_size()
    if world_size > 1:
        all_reduce_sum(total)
    return (total[0] / world_size).clamp(min=1.0).float()


def dense_efl_loss(
    efl: EFLClassificationLoss,
    pred_logits: List[Tensor],
    gt_labels: Tensor,
    normalizer: Tensor,
) -> Tensor:
    """EFL of a dense head: ``pred_logits`` per level ``(N, R_i, C)``, ``gt_labels`` ``(N, R)``
    (``C``: background, -1: ignored), summed over the valid anchors and divided by
    ``normalizer``; no loss for the background column (as Detectron2's focal loss)."""
    num_classes = efl.num_classes
    valid = gt_labels >= 0
    target = F.one_hot(gt_labels[valid], num_classes=num_classes + 1)[:, :-1]
    logits = cat(pred_logits, dim=1)[valid]
    return efl(logits, target.to(logits.dtype), normalizer=normalizer)


def log_efl_statistics(
    efl: EFLClassificationLoss, frequency_groups: Optional[Sequence[str]], log_period: int
) -> Dict[str, float]:
    """Write the per-group means of ``g_j``, ``gamma_j`` and ``w_j`` (``efl/grad_ratio/*``,
    ``efl/gamma/*``, ``efl/weight/*``; groups 'r' / 'c' / 'f' and 'all') to the EventStorage every
    ``log_period`` iterations (0: never); returns what was written."""
    if log_period <= 0:
        return {}
    if get_event_storage().iter % log_period != 0:
        return {}
    gamma, weight = efl.focusing_factors()
    written = {}
    overall = ["all"] * efl.num_classes
    for prefix, values in (
        ("efl/grad_ratio", efl.statistics.ratio),
        ("efl/gamma", gamma),
        ("efl/weight", weight),
    ):
        if frequency_groups:
            written.update(log_to_storage(prefix, frequency_groups, values))
        written.update(log_to_storage(prefix, overall, values))
    return written


def check_frequency_groups(frequency_groups, num_classes: int) -> Optional[List[str]]:
    """One 'r' / 'c' / 'f' per class as a list, or None; a ValueError for a wrong length."""
    if frequency_groups is None:
        return None
    if len(frequency_groups) != num_classes:
        raise ValueError(f"{len(frequency_groups)} frequency groups for {num_classes} classes")
    return list(frequency_groups)
