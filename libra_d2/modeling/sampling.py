"""Sample-level balance of Libra R-CNN (IoU-balanced negatives, instance/class-balanced positives).

Pure, vectorised torch functions that mirror Detectron2's
:func:`detectron2.modeling.sampling.subsample_labels`. Everything runs on the device of the
inputs; there is no loop over proposals (the only Python loops run over a handful of bins or
groups and issue one tensor op each). No sampling state is kept between calls (the only
module state is a cache of small constant ``arange`` columns).

Public API
----------
* :func:`iou_balanced_negative_indices` -- IoU-balanced negatives (paper, Sec. 3.1, eq. 2).
* :func:`instance_balanced_positive_indices` -- equal number of positives per ground truth.
* :func:`class_balanced_positive_indices` -- equal per class, then per instance inside a class.
* :func:`libra_subsample_labels` -- drop-in for ``subsample_labels`` with the options above.
* :class:`LibraSamplingConfig` -- the options bundled in one object (no config reading here).

How the grouped random selections are vectorised
------------------------------------------------
"Take up to ``Q_g`` members of every group ``g`` uniformly at random, then fill the shortfall
uniformly at random from the members that were not taken" (groups: IoU bins, GTs, classes):

* the candidates are put in a uniformly random order (one ``randperm``, as Detectron2 does);
* every candidate's 1-based rank inside its group, in that order, is a cumulative sum of a
  (groups x candidates) one-hot matrix (a stable sort when that matrix would be large); the
  order inside every group is uniformly random, so "rank <= Q_g" is a uniform random
  ``Q_g``-subset of group ``g``;
* the fill draws fresh uniform keys for everybody else and one ``topk`` takes the ``n``
  smallest keys, the quota members' keys being set below all others (a fresh draw: the
  random order must not be reused, because conditioned on who filled the quotas it is no
  longer uniform across groups).

For positives the final keys are ``min(rank, cap + 1) + U(0, 1)``: the ``n`` smallest are the
members of rank <= cap, lowest ranks first (equal shares per group when the caps overshoot),
then a uniform random top-up.
"""

from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import torch

__all__ = [
    "LibraSamplingConfig",
    "POS_SAMPLING_MODES",
    "NEG_SAMPLING_MODES",
    "iou_balanced_negative_indices",
    "instance_balanced_positive_indices",
    "class_balanced_positive_indices",
    "libra_subsample_labels",
]

POS_SAMPLING_MODES = ("random", "instance", "class")
NEG_SAMPLING_MODES = ("random", "iou_balanced")


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _flat(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 1 else t.reshape(-1)


def _int64(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.int64 else t.long()


def _candidates(mask_or_idx: torch.Tensor) -> torch.Tensor:
    """A bool mask (N,) -> indices of its True entries; an integer tensor -> itself (int64, 1D)."""
    if mask_or_idx.dtype == torch.bool:
        return torch.nonzero(_flat(mask_or_idx), as_tuple=True)[0]
    return _int64(_flat(mask_or_idx))


def _empty_index(device) -> torch.Tensor:
    return torch.empty(0, dtype=torch.int64, device=device)


def _random_subset(cand: torch.Tensor, k: int, generator) -> torch.Tensor:
    """``k`` elements of ``cand`` uniformly at random (Detectron2's randperm recipe)."""
    perm = torch.randperm(cand.numel(), generator=generator, device=cand.device)[:k]
    return cand[perm]


def _smallest(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` smallest keys (unordered)."""
    return torch.topk(keys, k, largest=False, sorted=False).indices


# Ranks come from a one-hot cumulative sum (time and memory ~ groups x candidates) when there
# are at most _ONE_HOT_MAX_GROUPS groups or the one-hot matrix has fewer than
# _ONE_HOT_MAX_ELEMENTS entries, from a stable sort (~ m log m) otherwise. The element bound
# is PyTorch's intra-op grain size: larger elementwise ops go multi-threaded, which costs
# milliseconds instead of microseconds on a busy CPU.
_ONE_HOT_MAX_GROUPS = 16
_ONE_HOT_MAX_ELEMENTS = 1 << 15


def _ranks_in_order(group: torch.Tensor, num_groups: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """1-based rank of every element among the elements of its group, in the given order.

    ``rank[i] = #{j <= i : group[j] == group[i]}``. The callers put the candidates in a random
    order first (``randperm``), which makes the order inside every group uniformly random.

    Args:
        group: (m,) int64 group ids in ``[0, num_groups)``.
        num_groups: number of groups.

    Returns:
        rank (m,) integer tensor (1-based; int32 or int64) and counts (num_groups,), the size of
        every group.
    """
    m = group.numel()
    if num_groups <= _ONE_HOT_MAX_GROUPS or num_groups * m < _ONE_HOT_MAX_ELEMENTS:
        row = group.unsqueeze(0)
        one_hot = torch.eq(row, _group_ids(num_groups, group.device))  # (G, m)
        running = one_hot.cumsum(1, dtype=torch.int32 if m < 2**31 else torch.int64)
        return running.gather(0, row).squeeze(0), running[:, -1]
    # stable sort by group keeps the given order inside every group
    sorted_group, order = torch.sort(group, stable=True)
    counts = torch.bincount(group, minlength=num_groups)
    starts = counts.cumsum(0).sub_(counts)  # sorted position of every group's first member
    sorted_rank = torch.arange(1, m + 1, device=group.device).sub_(
        starts.index_select(0, sorted_group)
    )
    rank = torch.empty_like(sorted_rank).index_copy_(0, order, sorted_rank)
    return rank, counts


_GROUP_IDS = {}


def _group_ids(num_groups: int, device) -> torch.Tensor:
    """``arange(num_groups)`` as a column, cached (read-only) for small group counts."""
    key = (num_groups, str(device))
    ids = _GROUP_IDS.get(key)
    if ids is None:
        ids = torch.arange(num_groups, device=device).unsqueeze(1)
        if num_groups <= 256 and len(_GROUP_IDS) < 1024:
            _GROUP_IDS[key] = ids
    return ids


def _random_order(cand: torch.Tensor, generator) -> torch.Tensor:
    return cand.index_select(
        0, torch.randperm(cand.numel(), generator=generator, device=cand.device)
    )


def _take_all_or_shuffle(mask_or_idx: torch.Tensor, n: int, generator):
    """The common start of every balanced sampler: ``(indices, None)`` when all (``n >= m``) or
    none (``n <= 0``) of the ``m`` candidates are taken, else ``(None, candidates in uniformly
    random order)``."""
    cand = _candidates(mask_or_idx)
    if n >= cand.numel():
        return cand, None
    if n <= 0:
        return _empty_index(cand.device), None
    return None, _random_order(cand, generator)


# ---------------------------------------------------------------------------------------------
# negatives
# ---------------------------------------------------------------------------------------------
def iou_balanced_negative_indices(
    neg: torch.Tensor,
    max_ious: torch.Tensor,
    num_neg: int,
    num_bins: int = 3,
    floor_thr: float = -1.0,
    floor_fraction: float = 0.0,
    generator: Optional[torch.Generator] = None,
    *,
    iou_upper: Optional[float] = None,
) -> torch.Tensor:
    """IoU-balanced sampling of ``min(num_neg, #negatives)`` negatives (Libra R-CNN, eq. 2).

    Args:
        neg: (N,) bool mask of the negative proposals, or a 1D int tensor of their indices.
        max_ious: (N,) every proposal's max IoU with the ground truth (0 for images without GT),
            for *all* proposals, indexed like the proposals.
        num_neg: how many negatives to return (all of them if there are not more).
        num_bins: K, the number of IoU bins (>= 1; 1 means plain random sampling).
        floor_thr: ``< 0`` (default -1): every negative, IoU == 0 included, is eligible for the
            bins, on every call (nothing is mutated). ``>= 0``: negatives with IoU < floor_thr
            (IoU == 0 when floor_thr == 0) form a floor set that is sampled at random and
            supplies ``floor_fraction`` of the samples; the bins cover the others.
        floor_fraction: fraction of ``num_neg`` taken from the floor set: the binned
            negatives supply ``n_iou = int(num_neg * (1 - floor_fraction))`` samples (all of
            them if fewer), the floor set supplies the rest; if the floor set is short, the
            remaining binned negatives fill the gap at random. With ``floor_thr < 0`` there is no
            floor set and, as in the reference, only the quotas shrink (``n_iou // K`` per bin,
            the rest at random).
        generator: optional ``torch.Generator`` on the inputs' device.
        iou_upper: upper end of the binned IoU interval ``[max(floor_thr, 0), iou_upper)``.
            ``None`` (default, the public reference): the max IoU over *all* proposals of the
            image, ``max_ious.max()`` -- 1.0 when GT boxes are appended to the proposals, so with
            a 0.5 negative threshold and K = 3 the top bin is empty, the middle bin covers only
            [1/3, 0.5), and the top bin's quota falls to the random fill. A float (e.g. the
            matcher's negative threshold, 0.5) gives K equal bins that all cover negative IoUs,
            as the paper describes (stronger hard-negative mining). Negatives with
            IoU >= the upper bound fall in the top bin.

    The bins are ``[lo + k w, lo + (k + 1) w)``, ``w = (upper - lo) / K``, ``lo = max(floor_thr,
    0)`` (up to float rounding at the edges). Each bin takes up to ``n_iou // K`` of its negatives
    uniformly at random (``n_iou = num_neg`` by default); the shortfall is filled uniformly at
    random from the binned negatives not taken yet.

    Returns:
        int64 indices into ``max_ious`` (no duplicates, unordered).
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if not 0.0 <= floor_fraction <= 1.0:
        raise ValueError(f"floor_fraction must be in [0, 1], got {floor_fraction}")
    n = int(num_neg)
    taken, cand = _take_all_or_shuffle(neg, n, generator)
    if taken is not None:
        return taken
    max_ious = _flat(max_ious)
    hi = float(max_ious.max()) if iou_upper is None else float(iou_upper)
    sel = _iou_balanced_positions(
        max_ious.index_select(0, cand),
        hi,
        n,
        int(num_bins),
        float(floor_thr),
        float(floor_fraction),
        generator,
    )
    return cand.index_select(0, sel)


def _iou_balanced_positions(
    ious: torch.Tensor,
    hi: float,
    n: int,
    K: int,
    floor_thr: float,
    floor_fraction: float,
    generator,
) -> torch.Tensor:
    """Positions (into ``ious``, candidates in uniformly random order) of ``n < len(ious)``
    IoU-balanced negatives.

    A bin's quota members are its first ``quota`` members in the (random) order; the fill draws
    fresh uniform keys for the others and takes the smallest with one ``topk``.
    """
    m = ious.numel()
    device = ious.device
    use_floor = floor_thr >= 0
    lo = max(floor_thr, 0.0)
    if K > 1 and hi > lo:
        scaled = ious * (K / (hi - lo)) if lo == 0.0 else (ious - lo).mul_(K / (hi - lo))
        group = scaled.long().clamp_(0, K - 1)
    else:  # one bin, or a degenerate interval: a single populated bin
        group = torch.zeros(m, dtype=torch.int64, device=device)
    if use_floor:
        floor_mask = ious < floor_thr if floor_thr > 0 else ious <= 0
        group = group.masked_fill_(floor_mask, K)
    rank, counts = _ranks_in_order(group, K + 1 if use_floor else K)
    counts = counts.tolist()

    m_s = sum(counts[:K])  # binned set S; the floor set F has m - m_s members
    n_iou = int(n * (1.0 - floor_fraction))
    if not use_floor:  # (a floor_fraction > 0 only lowers the quotas, as in the reference)
        q = n_iou // K
        quota_members = rank <= q
        num_quota = sum(min(c, q) for c in counts)
    else:
        n_f = min(m - m_s, n - min(m_s, n_iou))
        q = n_iou // K
        quotas = [min(c, q) for c in counts[:K]] if m_s > n_iou else counts[:K]
        quotas = quotas + [n_f]
        num_quota = sum(quotas)
        quota_t = torch.tensor(quotas, dtype=torch.int64, device=device)
        quota_members = rank <= quota_t.index_select(0, group)
    if num_quota == n:
        return torch.nonzero(quota_members, as_tuple=True)[0]
    # uniform fill from the binned negatives that are not quota members
    w = torch.rand(m, generator=generator, device=device)
    if use_floor:  # the floor set only supplies its own quota
        w = w.masked_fill_(group == K, float("inf"))
    return _smallest(w.masked_fill_(quota_members, -1.0), n)


# ---------------------------------------------------------------------------------------------
# positives
# ---------------------------------------------------------------------------------------------
def _capped_balanced_positions(
    rank: torch.Tensor, num_groups: int, n: int, generator
) -> torch.Tensor:
    """Positions (into ``rank``) of ``n`` elements: members of (1-based) rank <= cap first, the
    lowest ranks first (so the groups keep equal shares, +-1; random among equal ranks), then a
    uniform random top-up from the others."""
    cap = int(round(n / num_groups)) + 1
    keys = torch.rand(rank.numel(), generator=generator, device=rank.device)
    return _smallest(keys.add_(rank.clamp_(max=cap + 1)), n)


def instance_balanced_positive_indices(
    pos: torch.Tensor,
    matched_gt_idx: torch.Tensor,
    num_pos: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Instance-balanced sampling of ``min(num_pos, #positives)`` positives.

    Every ground truth that has positives gets at most ``cap = round(n / num_gts) + 1`` of them
    (``num_gts`` counts the GTs with at least one positive), chosen at random. If these number
    more than ``n``, the lowest within-GT ranks are kept first (the GTs keep equal shares, +-1,
    where the reference truncates at random); if fewer, the rest is topped up uniformly at
    random from the positives not taken.

    Args:
        pos: (N,) bool mask of positive proposals or 1D int tensor of their indices.
        matched_gt_idx: (N,) int index (>= 0) of every proposal's matched ground truth.
        num_pos: number of positives to return (all of them if there are not more).
        generator: optional ``torch.Generator`` on the inputs' device.

    Returns:
        int64 indices into ``matched_gt_idx`` (no duplicates, unordered).
    """
    n = int(num_pos)
    taken, cand = _take_all_or_shuffle(pos, n, generator)
    if taken is not None:
        return taken
    gt = _int64(matched_gt_idx.index_select(0, cand))
    rank, counts = _ranks_in_order(gt, int(gt.max()) + 1)
    num_gts = int(torch.count_nonzero(counts))
    return cand.index_select(0, _capped_balanced_positions(rank, num_gts, n, generator))


def class_balanced_positive_indices(
    pos: torch.Tensor,
    gt_classes_of_proposals: torch.Tensor,
    matched_gt_idx: torch.Tensor,
    num_pos: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Class-balanced sampling of ``min(num_pos, #positives)`` positives.

    Every class present among the positives gets at most ``cap = round(n / num_classes) + 1``
    positives; inside a class they are taken in instance-balanced order (one per GT of the
    class in turn, random inside a GT, so the GTs of a class keep equal shares, +-1). Caps
    that add up to more than ``n`` are trimmed keeping the classes equal (+-1); a shortfall is
    topped up uniformly at random from the positives not taken.

    Args:
        pos: (N,) bool mask of positive proposals or 1D int tensor of their indices.
        gt_classes_of_proposals: (N,) int class (>= 0) of every proposal (its GT's class).
        matched_gt_idx: (N,) int index (>= 0) of every proposal's matched ground truth.
        num_pos: number of positives to return (all of them if there are not more).
        generator: optional ``torch.Generator`` on the inputs' device.

    Returns:
        int64 indices into the proposals (no duplicates, unordered).
    """
    n = int(num_pos)
    taken, cand = _take_all_or_shuffle(pos, n, generator)
    if taken is not None:
        return taken
    gt = _int64(matched_gt_idx.index_select(0, cand))
    rank_gt, _ = _ranks_in_order(gt, int(gt.max()) + 1)
    # instance-balanced order: by rank inside the GT; the stable sort keeps the random order
    # among equal ranks
    cand = cand.index_select(0, torch.sort(rank_gt, stable=True).indices)
    cls = _int64(gt_classes_of_proposals.index_select(0, cand))
    rank, counts = _ranks_in_order(cls, int(cls.max()) + 1)
    num_classes = int(torch.count_nonzero(counts))
    return cand.index_select(0, _capped_balanced_positions(rank, num_classes, n, generator))


# ---------------------------------------------------------------------------------------------
# labels -> (pos_idx, neg_idx)
# ---------------------------------------------------------------------------------------------
def libra_subsample_labels(
    labels: torch.Tensor,
    num_samples: int,
    positive_fraction: float,
    bg_label: int,
    *,
    max_ious: Optional[torch.Tensor] = None,
    matched_idxs: Optional[torch.Tensor] = None,
    pos_sampling: str = "random",
    neg_sampling: str = "random",
    num_bins: int = 3,
    floor_thr: float = -1.0,
    floor_fraction: float = 0.0,
    iou_upper: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Detectron2's ``subsample_labels`` with Libra R-CNN's balanced samplers.

    Same contract as :func:`detectron2.modeling.sampling.subsample_labels`: ``labels`` holds -1
    (ignore), ``bg_label`` (negative) or anything else (positive); it returns
    ``(pos_idx, neg_idx)`` with ``num_pos = min(#pos, int(num_samples * positive_fraction))``
    and ``num_neg = min(#neg, num_samples - num_pos)`` elements. With
    ``pos_sampling == neg_sampling == "random"`` it runs Detectron2's algorithm (same counts,
    same random stream: same indices for the same seed).

    Args:
        max_ious: (N,) max IoU of every proposal; needed by ``neg_sampling="iou_balanced"``.
        matched_idxs: (N,) matched GT index of every proposal; needed by
            ``pos_sampling in ("instance", "class")``. With "class", the classes are ``labels``.
        pos_sampling: "random" | "instance" | "class".
        neg_sampling: "random" | "iou_balanced".
        num_bins, floor_thr, floor_fraction, iou_upper: see :func:`iou_balanced_negative_indices`.
        generator: optional ``torch.Generator`` on the labels' device.
    """
    if pos_sampling not in POS_SAMPLING_MODES:
        raise ValueError(f"pos_sampling must be one of {POS_SAMPLING_MODES}, got {pos_sampling!r}")
    if neg_sampling not in NEG_SAMPLING_MODES:
        raise ValueError(f"neg_sampling must be one of {NEG_SAMPLING_MODES}, got {neg_sampling!r}")
    labels = _flat(labels)
    positive = torch.nonzero((labels != -1) & (labels != bg_label), as_tuple=True)[0]
    neg_mask = labels == bg_label
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    if neg_sampling == "random":
        # Detectron2's recipe, op for op (same random stream)
        negative = torch.nonzero(neg_mask, as_tuple=True)[0]
        num_neg = min(negative.numel(), num_samples - num_pos)

    if pos_sampling == "random":
        pos_idx = _random_subset(positive, num_pos, generator)
    else:
        if matched_idxs is None:
            raise ValueError(f"pos_sampling={pos_sampling!r} needs matched_idxs")
        if pos_sampling == "instance":
            pos_idx = instance_balanced_positive_indices(positive, matched_idxs, num_pos, generator)
        else:
            pos_idx = class_balanced_positive_indices(
                positive, labels, matched_idxs, num_pos, generator
            )

    if neg_sampling == "random":
        neg_idx = _random_subset(negative, num_neg, generator)
    else:
        if max_ious is None:
            raise ValueError("neg_sampling='iou_balanced' needs max_ious")
        # returns min(#negatives, num_samples - num_pos) indices, like Detectron2
        neg_idx = iou_balanced_negative_indices(
            neg_mask,
            max_ious,
            num_samples - num_pos,
            num_bins=num_bins,
            floor_thr=floor_thr,
            floor_fraction=floor_fraction,
            generator=generator,
            iou_upper=iou_upper,
        )
    return pos_idx, neg_idx


@dataclass(frozen=True)
class LibraSamplingConfig:
    """Options of :func:`libra_subsample_labels`, carried by one object (RPN / ROI heads).

    Defaults are Detectron2's random sampling; ``LibraSamplingConfig.libra()`` gives Libra
    R-CNN's box-head setting (instance-balanced positives, IoU-balanced negatives, K = 3,
    floor_thr = -1, floor_fraction = 0, reference bin upper bound).
    """

    pos_sampling: str = "random"
    neg_sampling: str = "random"
    num_bins: int = 3
    floor_thr: float = -1.0
    floor_fraction: float = 0.0
    iou_upper: Optional[float] = None  # None: max IoU over all proposals (reference)

    def __post_init__(self):
        if self.pos_sampling not in POS_SAMPLING_MODES:
            raise ValueError(
                f"pos_sampling must be one of {POS_SAMPLING_MODES}, got {self.pos_sampling!r}"
            )
        if self.neg_sampling not in NEG_SAMPLING_MODES:
            raise ValueError(
                f"neg_sampling must be one of {NEG_SAMPLING_MODES}, got {self.neg_sampling!r}"
            )
        if int(self.num_bins) < 1:
            raise ValueError(f"num_bins must be >= 1, got {self.num_bins}")
        if not 0.0 <= self.floor_fraction <= 1.0:
            raise ValueError(f"floor_fraction must be in [0, 1], got {self.floor_fraction}")
        if self.iou_upper is not None and self.iou_upper <= max(self.floor_thr, 0.0):
            raise ValueError(
                f"iou_upper ({self.iou_upper}) must be above max(floor_thr, 0) "
                f"({max(self.floor_thr, 0.0)})"
            )

    @classmethod
    def libra(cls, **overrides) -> "LibraSamplingConfig":
        opts = dict(pos_sampling="instance", neg_sampling="iou_balanced")
        opts.update(overrides)
        return cls(**opts)

    @property
    def is_random(self) -> bool:
        """True when this is exactly Detectron2's sampling."""
        return self.pos_sampling == "random" and self.neg_sampling == "random"

    @property
    def needs_max_ious(self) -> bool:
        return self.neg_sampling == "iou_balanced"

    @property
    def needs_matched_idxs(self) -> bool:
        return self.pos_sampling != "random"

    def as_dict(self) -> dict:
        return asdict(self)

    def subsample(
        self,
        labels: torch.Tensor,
        num_samples: int,
        positive_fraction: float,
        bg_label: int,
        *,
        max_ious: Optional[torch.Tensor] = None,
        matched_idxs: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:func:`libra_subsample_labels` with this object's options."""
        return libra_subsample_labels(
            labels,
            num_samples,
            positive_fraction,
            bg_label,
            max_ious=max_ious,
            matched_idxs=matched_idxs,
            generator=generator,
            **self.as_dict(),
        )


def sampling_config_from_cfg(sampler_node) -> LibraSamplingConfig:
    """A :class:`LibraSamplingConfig` from a ``SAMPLER`` config node (``MODEL.RPN.SAMPLER``).

    Reads POS, NEG, NUM_BINS, FLOOR_THR, FLOOR_FRACTION and, where the node has it, IOU_UPPER
    (negative or absent: None, the reference bin range).
    """
    if sampler_node is None:
        raise KeyError(
            "The SAMPLER config node is missing: call libra_d2.add_libra_config(cfg) before "
            "building the model"
        )
    iou_upper = sampler_node.get("IOU_UPPER", -1.0)
    return LibraSamplingConfig(
        pos_sampling=sampler_node.POS,
        neg_sampling=sampler_node.NEG,
        num_bins=int(sampler_node.NUM_BINS),
        floor_thr=float(sampler_node.FLOOR_THR),
        floor_fraction=float(sampler_node.FLOOR_FRACTION),
        iou_upper=None if iou_upper is None or iou_upper < 0 else float(iou_upper),
    )
