"""Bucketed Class Re-weighting, BCR (Libra R-CNN, journal version, Sec. 3.3.3, Eq. 20-23).

For a sigmoid classifier, the negative (discouraging) gradients that a sample of class ``t``
sends to a non-target foreground class ``i`` are scaled by a per-class weight ``w_i`` that is
small for rare classes and ~1 for frequent ones; the sample's own class and the background keep
weight 1 (Eq. 20). The weights come from the class frequencies::

    f'_i = ln f_i                                        (Eq. 21)
    s_i  = index of the uniform bucket of [min f', max f'] (S buckets) containing f'_i
    x_i  = s_i / (S - 1)                                 (Eq. 22)
    w_i  = sigmoid((x_i - a) / t) = 1 / (1 + e^(-(x_i - a)/t))   (Eq. 23)

with S = 10, a = 0.5, t = 0.025 by default. Because the buckets span [min, max] of ``ln f``, the
weights do not depend on the unit of ``f`` (image counts, instance counts or fractions give the
same buckets).

Layout (Detectron2 box predictor): ``logits`` (N, C+1), column C is the background, labels in
[0, C] with C meaning background.
"""

from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "class_frequencies",
    "bucket_indices",
    "bucketed_class_weights",
    "bcr_sigmoid_ce_loss",
    "BCRSigmoidCELoss",
]

# Positions within this distance below a bucket edge (in bucket units) count as on the edge, so
# that e.g. ln(10)/ln(1000)*3 = 0.9999999999999998 falls into bucket 1, as computed by hand.
_EDGE_EPS = 1e-9


def class_frequencies(
    source: Union[torch.Tensor, Sequence[float], Sequence[Mapping]],
    num_classes: Optional[int] = None,
    dataset_id_to_contiguous_id: Optional[Mapping[int, int]] = None,
    count_key: str = "image_count",
) -> torch.Tensor:
    """The contiguous per-class frequency vector (float64, shape (C,)) that BCR buckets.

    ``source`` is either
      * a plain sequence / 1-D tensor of numbers, already in contiguous class order; or
      * a Detectron2 ``class_image_count`` metadata list (LVIS), ``[{"id": ..., "image_count": ...},
        ...]``. Entries are placed by ``dataset_id_to_contiguous_id[id]`` when that mapping is given
        (Detectron2's ``thing_dataset_id_to_contiguous_id``); otherwise by the rank of ``id`` among
        the sorted ids (for LVIS, ids 1..C map to id - 1, which is what Detectron2's LVIS loader
        does). ``count_key`` selects the field (e.g. "instance_count").

    Raises ValueError on duplicate / missing classes, negative or non-finite counts, or when
    ``num_classes`` is given and does not match.
    """
    if isinstance(source, torch.Tensor):
        freqs = source.detach().to(dtype=torch.float64, device="cpu").flatten()
    else:
        items = list(source)
        if len(items) > 0 and isinstance(items[0], Mapping):
            ids = [int(it["id"]) for it in items]
            if len(set(ids)) != len(ids):
                raise ValueError("class_image_count has duplicate ids")
            if dataset_id_to_contiguous_id is not None:
                index = {i: int(dataset_id_to_contiguous_id[i]) for i in ids}
                n = len(dataset_id_to_contiguous_id)
            else:
                index = {i: rank for rank, i in enumerate(sorted(ids))}
                n = len(ids)
            values = [float("nan")] * n
            for it, i in zip(items, ids):
                values[index[i]] = float(it[count_key])
            freqs = torch.tensor(values, dtype=torch.float64)
            if torch.isnan(freqs).any():
                missing = torch.nonzero(torch.isnan(freqs))[:, 0].tolist()
                raise ValueError(f"no frequency for contiguous classes {missing[:10]}")
        else:
            freqs = torch.tensor([float(v) for v in items], dtype=torch.float64)
    if num_classes is not None and freqs.numel() != num_classes:
        raise ValueError(f"got {freqs.numel()} frequencies for {num_classes} classes")
    if not torch.isfinite(freqs).all() or (freqs < 0).any():
        raise ValueError("frequencies must be finite and >= 0")
    return freqs


def bucket_indices(
    frequencies: Union[torch.Tensor, Sequence[float]],
    num_buckets: int = 10,
    min_frequency: Optional[float] = None,
) -> torch.Tensor:
    """Bucket index ``s_i`` in [0, S-1] of each class (Eq. 21-22), int64 tensor (C,).

    ``ln f`` is split into ``S`` equal-width buckets between its minimum and maximum; bucket k
    covers ``[min + k w, min + (k+1) w)`` and the last one also holds the maximum.

    Special cases (the paper does not define them):
      * zero frequencies: frequencies are clamped below at ``min_frequency`` before the log.
        ``None`` (default) uses the smallest positive frequency, so zero-frequency classes join
        the rarest bucket without changing the range; pass 1.0 with image counts to treat a class
        seen in no image as seen in one. All-zero input counts as equal frequencies.
      * equal frequencies (max == min, including a single class): no class is rarer than another,
        every class goes to the top bucket S-1 (x = 1, weight ~1: BCR is a no-op).
    """
    if int(num_buckets) != num_buckets or num_buckets < 2:
        raise ValueError(f"num_buckets must be an integer >= 2, got {num_buckets}")
    f = class_frequencies(frequencies)
    if f.numel() == 0:
        raise ValueError("frequencies must not be empty")
    positive = f[f > 0]
    if positive.numel() == 0:
        return torch.full(f.shape, num_buckets - 1, dtype=torch.int64)
    floor = float(positive.min()) if min_frequency is None else float(min_frequency)
    if not floor > 0:
        raise ValueError(f"min_frequency must be > 0, got {min_frequency}")
    log_f = torch.log(torch.clamp(f, min=floor))
    lo, hi = log_f.min(), log_f.max()
    if not hi > lo:
        return torch.full(f.shape, num_buckets - 1, dtype=torch.int64)
    pos = (log_f - lo) / (hi - lo) * num_buckets
    return torch.clamp(torch.floor(pos + _EDGE_EPS), 0, num_buckets - 1).to(torch.int64)


def bucketed_class_weights(
    frequencies: Union[torch.Tensor, Sequence[float]],
    num_buckets: int = 10,
    turning_point: float = 0.5,
    temperature: float = 0.025,
    min_frequency: Optional[float] = None,
) -> torch.Tensor:
    """BCR weights ``w_i = sigmoid((s_i / (S - 1) - a) / t)`` (Eq. 21-23), float32 tensor (C,).

    Args:
        frequencies: per-class frequencies in contiguous order (see :func:`class_frequencies`);
            any unit (counts or fractions).
        num_buckets: S (>= 2).
        turning_point: a, the normalised bucket position where the weight crosses 0.5.
        temperature: t (> 0); small t makes the weights nearly binary (rare ~0, frequent ~1).
        min_frequency: lower clamp before the log (see :func:`bucket_indices` for zero and equal
            frequencies).

    With the defaults, bucket 0 gets sigmoid(-20) ~ 2e-9 and bucket 9 gets sigmoid(20) ~ 1;
    buckets 4 and 5 (x = 4/9, 5/9) get sigmoid(-/+2.22) ~ 0.098 / 0.902.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = bucket_indices(frequencies, num_buckets, min_frequency)
    x = s.to(torch.float64) / (num_buckets - 1)
    return torch.sigmoid((x - turning_point) / temperature).to(torch.float32)


def bcr_sigmoid_ce_loss(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
    class_weights: torch.Tensor,
    reduction: str = "mean",
    include_background: bool = True,
    exclude_background_rois: bool = False,
) -> torch.Tensor:
    """Sigmoid cross-entropy with bucketed class re-weighting (Eq. 20).

    ``logits`` (N, C+1), column C = background; ``gt_classes`` (N,) in [0, C] (C = background);
    ``class_weights`` (C,) from :func:`bucketed_class_weights`. With ``y`` the one-hot of
    ``gt_classes`` over C+1 columns and ``BCE_ij`` the binary cross-entropy of column j::

        L = sum_i sum_j W_ij * BCE_ij / N,   W_ij = 1            if j == gt_i (positive term)
                                                   1            if j == C (background column)
                                                   w_j          otherwise (negative term of a
                                                                non-target foreground class)

    i.e. only the discouraging gradients sent to non-target foreground classes are scaled. In the
    literal form (default) this holds for background RoIs too (every foreground class is a
    non-target negative for them), as Eq. 20 is written. With ``exclude_background_rois`` a
    background RoI gives every column weight 1 (EQL's ``E(r)``: the suppression is for samples of
    another foreground class; background still teaches every class "not me" at full strength).

    Background column (the paper is ambiguous for sigmoid): Eq. 20 sums over i = 0..C including
    the background (its i = 0) with weight 1, so by default (``include_background=True``) the
    background column is trained as one more binary classifier (target 1 for background RoIs),
    as in EQL's sigmoid head. ``include_background=False`` drops column C instead (Detectron2's
    ``use_sigmoid_ce`` convention: background RoIs are all-zero targets over the C foreground
    columns, and column C gets no gradient). Either way inference should score foreground
    classes with ``sigmoid(logits[:, :C])``.

    Reductions: "mean" -> sum / N (N = number of sampled RoIs, Detectron2's normalisation; 0 for
    N = 0); "sum"; "none" -> the weighted elementwise loss (N, C+1) or (N, C).
    Uses ``binary_cross_entropy_with_logits``: finite for any finite logits (e.g. +-100).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, C+1), got shape {tuple(logits.shape)}")
    n, k = logits.shape
    c = k - 1
    if class_weights.dim() != 1 or class_weights.numel() != c:
        raise ValueError(
            f"class_weights must have C = {c} entries, got shape {tuple(class_weights.shape)}"
        )
    gt_classes = gt_classes.long()
    # (checked where it is free; on a GPU one_hot asserts the range on the device)
    if n > 0 and gt_classes.device.type == "cpu" and (gt_classes.min() < 0 or gt_classes.max() > c):
        raise ValueError(f"gt_classes must be in [0, {c}]")
    target = F.one_hot(gt_classes, k).to(logits.dtype)
    neg_w = torch.cat([class_weights.detach().to(logits), logits.new_ones(1)])  # (C+1,), bg = 1
    weight = torch.where(target > 0, torch.ones_like(target), neg_w[None, :].expand(n, k))
    if exclude_background_rois:
        weight = torch.where((gt_classes == c)[:, None], torch.ones_like(weight), weight)
    if not include_background:
        logits, target, weight = logits[:, :c], target[:, :c], weight[:, :c]
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(n, 1)
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


class BCRSigmoidCELoss(nn.Module):
    """Thin module around :func:`bcr_sigmoid_ce_loss`; the weights are a (non-trainable) buffer,
    so they follow ``.to(device)`` and are saved in checkpoints."""

    def __init__(
        self, class_weights: torch.Tensor, reduction: str = "mean", include_background: bool = True
    ):
        super().__init__()
        self.register_buffer(
            "class_weights", torch.as_tensor(class_weights, dtype=torch.float32).clone()
        )
        self.reduction = reduction
        self.include_background = include_background

    @classmethod
    def from_frequencies(
        cls,
        frequencies,
        num_buckets: int = 10,
        turning_point: float = 0.5,
        temperature: float = 0.025,
        min_frequency: Optional[float] = None,
        **kwargs,
    ) -> "BCRSigmoidCELoss":
        """Build from per-class frequencies (anything :func:`class_frequencies` accepts)."""
        freqs = class_frequencies(frequencies)
        w = bucketed_class_weights(freqs, num_buckets, turning_point, temperature, min_frequency)
        return cls(w, **kwargs)

    def forward(self, logits: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
        return bcr_sigmoid_ce_loss(
            logits, gt_classes, self.class_weights, self.reduction, self.include_background
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.class_weights.numel()}, reduction={self.reduction!r}, "
            f"include_background={self.include_background}"
        )
