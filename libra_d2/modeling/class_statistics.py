"""Per-class running statistics, kept as fp32 ``nn.Module`` buffers.

One mechanism serves every method in this project that tracks a per-class statistic during training:

* :class:`ClassGradientRatio` (ACCUMULATE mode, Equalized Focal Loss): running sums of the positive
  and the negative gradient magnitudes of every class, and the ratio ``g_j = clamp(pos_j / neg_j, 0,
  1)``.
* :class:`MeanClassScore` (EMA mode, LOCE): the mean classification score vector ``s`` of ``C + 1``
  entries (last entry = background), updated with an exponential moving average.

Both derive from :class:`ClassStatistics`, which holds the shared logic:

* the statistics are registered as persistent buffers, so they are part of the model's
  ``state_dict`` (saved / resumed by Detectron2's ``DetectionCheckpointer``), move with
  ``.to(device)``, and load with ``torch.load(..., weights_only=True)``. They stay fp32 even if the
  model is cast with ``.half()``;
* a process-group-safe SUM all-reduce (:func:`libra_d2.utils.comm.all_reduce_sum`, a no-op on a
  single process);
* :meth:`ClassStatistics.log_to_storage`, which writes per-frequency-group means (``{prefix}/r``,
  ``{prefix}/c``, ``{prefix}/f``) into Detectron2's current ``EventStorage``, when one is active;
* :meth:`ClassStatistics.reset`.

Every process calls ``update`` with its own local batch contribution; after the update the
statistics are identical on all processes (so Detectron2's DDP buffer broadcast from rank 0 is
harmless), and they equal what one process seeing the whole (global) batch would have computed.
"""

from typing import Dict, Sequence, Tuple

import torch
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn

from ..utils.comm import all_reduce_sum

__all__ = [
    "log_to_storage",
    "ClassStatistics",
    "ClassGradientRatio",
    "MeanClassScore",
]

FREQUENCY_GROUPS = ("r", "c", "f")


# ----------------------------------------------------------------------------------------------------
# logging
# ----------------------------------------------------------------------------------------------------
def _current_event_storage():
    """Detectron2's active ``EventStorage`` or None (outside a storage context)."""
    try:
        return get_event_storage()
    except (AssertionError, IndexError):  # IndexError when asserts are stripped (python -O)
        return None


def log_to_storage(
    prefix: str,
    frequency_groups: Sequence[str],
    values: Tensor,
    period: int = 1,
) -> Dict[str, float]:
    """Write the mean of ``values`` per frequency group into Detectron2's current ``EventStorage``.

    Args:
        prefix: scalar names are ``f"{prefix}/{group}"``, e.g. ``"efl/grad_ratio/r"``.
        frequency_groups: one group letter per class (LVIS: ``'r'``, ``'c'`` or ``'f'``). Only the
        first
            ``len(frequency_groups)`` entries of ``values`` are used (a trailing background entry of
            a ``C + 1`` vector is ignored).
        values: per-class values, ``len(values) >= len(frequency_groups)``.
        period: log only when ``storage.iter % period == 0``.

    Returns:
        The dict of scalars written; empty when nothing was written (no active storage, off-period
        or no groups).
    """
    storage = _current_event_storage()
    if storage is None or len(frequency_groups) == 0:
        return {}
    if period > 1 and storage.iter % period != 0:
        return {}
    flat = values.detach().reshape(-1)
    if flat.numel() < len(frequency_groups):
        raise ValueError(
            f"{flat.numel()} values for {len(frequency_groups)} frequency groups: need one value "
            f"per class"
        )
    per_class = flat[: len(frequency_groups)].float().cpu().tolist()
    sums: Dict[str, float] = {}
    counts: Dict[str, int] = {}
    for group, value in zip(frequency_groups, per_class):
        sums[group] = sums.get(group, 0.0) + value
        counts[group] = counts.get(group, 0) + 1
    order = [g for g in FREQUENCY_GROUPS if g in sums] + sorted(
        g for g in sums if g not in FREQUENCY_GROUPS
    )
    written = {f"{prefix}/{g}": sums[g] / counts[g] for g in order}
    for name, value in written.items():
        storage.put_scalar(name, value, smoothing_hint=False)
    return written


# ----------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------
class ClassStatistics(nn.Module):
    """Base class: fp32 per-class buffers, SUM all-reduce, EventStorage logging, reset.

    Subclasses declare their statistics with :meth:`_register_statistic` and implement
    :meth:`values` (the vector that is logged) and an ``update`` method.

    Args:
        num_classes: number of foreground classes ``C``.
        group: process group for the all-reduce (default: the default group, when initialised).
    """

    def __init__(self, num_classes: int, group=None):
        super().__init__()
        if int(num_classes) <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.group = group
        self._initial_values: Dict[str, float] = {}

    # -- buffers
    # --------------------------------------------------------------------------------------
    def _register_statistic(self, name: str, size: int, initial_value: float) -> None:
        self.register_buffer(name, torch.full((size,), float(initial_value), dtype=torch.float32))
        self._initial_values[name] = float(initial_value)

    def _apply(self, fn, *args, **kwargs):
        # Keep the statistics fp32 when the owning model is cast (`.half()`, `.to(torch.bfloat16)`).
        module = super()._apply(fn, *args, **kwargs)
        for name in self._initial_values:
            buf = self._buffers.get(name)
            if buf is not None and buf.is_floating_point() and buf.dtype != torch.float32:
                self._buffers[name] = buf.float()
        return module

    @torch.no_grad()
    def reset(self) -> None:
        """Return every statistic to its initial value (start of a new training run)."""
        for name, value in self._initial_values.items():
            getattr(self, name).fill_(value)

    # -- distributed
    # ----------------------------------------------------------------------------------
    def all_reduce_(self, tensor: Tensor) -> Tensor:
        """In-place SUM across processes (no-op on a single process); see :func:`all_reduce_sum`."""
        return all_reduce_sum(tensor, self.group)

    def _device(self) -> torch.device:
        return next(iter(self._buffers.values())).device

    # -- logging
    # --------------------------------------------------------------------------------------
    def values(self) -> Tensor:
        """The per-class vector that :meth:`log_to_storage` summarises."""
        raise NotImplementedError

    def log_to_storage(
        self, prefix: str, frequency_groups: Sequence[str], period: int = 1
    ) -> Dict[str, float]:
        """Log per-frequency-group means of :meth:`values`; see the module-level
        :func:`log_to_storage`."""
        return log_to_storage(prefix, frequency_groups, self.values(), period=period)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class ClassGradientRatio(ClassStatistics):
    """ACCUMULATE mode: running sums of positive / negative gradient magnitudes per class (EFL,
    EQLv2).

    Buffers ``pos_grad`` and ``neg_grad`` (``C``, fp32) start at 0. :meth:`update` adds the batch
    sums all-reduced (SUM) across processes, so every process holds the global running sums.

    :attr:`ratio` ``g_j = clamp(pos_grad_j / neg_grad_j, 0, 1)``, and ``g_j = 1`` where
    ``neg_grad_j == 0`` (before the first update), so EFL starts exactly as focal loss.
    """

    def __init__(self, num_classes: int, group=None):
        super().__init__(num_classes, group)
        self._register_statistic("pos_grad", self.num_classes, 0.0)
        self._register_statistic("neg_grad", self.num_classes, 0.0)

    @torch.no_grad()
    def update(self, pos_sum: Tensor, neg_sum: Tensor) -> None:
        """Add this process's batch sums (each ``(C,)``) after summing them over all processes.

        With a process group, every process must call this the same number of times (it
        all-reduces).
        """
        if pos_sum.shape != (self.num_classes,) or neg_sum.shape != (self.num_classes,):
            raise ValueError(
                f"expected pos_sum/neg_sum of shape ({self.num_classes},), "
                f"got {tuple(pos_sum.shape)} and {tuple(neg_sum.shape)}"
            )
        device = self.pos_grad.device
        batch = torch.stack(
            [
                pos_sum.detach().to(device=device, dtype=torch.float32),
                neg_sum.detach().to(device=device, dtype=torch.float32),
            ]
        )
        self.all_reduce_(batch)
        self.pos_grad.add_(batch[0])
        self.neg_grad.add_(batch[1])

    @property
    def ratio(self) -> Tensor:
        """``g`` (``C``, fp32, detached): clamp(pos / neg, 0, 1), 1 where nothing was
        accumulated."""
        pos, neg = self.pos_grad.detach(), self.neg_grad.detach()
        has_neg = neg > 0
        safe_neg = torch.where(has_neg, neg, torch.ones_like(neg))
        return torch.where(has_neg, pos / safe_neg, torch.ones_like(pos)).clamp_(0.0, 1.0)

    def values(self) -> Tensor:
        return self.ratio


class MeanClassScore(ClassStatistics):
    """EMA mode: LOCE's mean classification score vector ``s`` (``C + 1`` entries, last =
    background).

    All entries start at ``init_value`` (0.01). Each step, every process passes its local *entries*:
    (class index, value) pairs - for each GT instance with at least one positive RoI, the mean
    softmax probability of its class over its positive RoIs (:meth:`entries_by_instance` builds
    those), and for each sampled memory class the mean over its memory rows. With ``n_c`` entries of
    class ``c`` over all processes,

        s_c <- a^{n_c} s_c + (1 - a^{n_c}) mean(entries of c),      a = momentum (0.9),

    classes without entries are unchanged, and the background entry is reset to ``background_value``
    (0.01) after every update.

    Distributed equivalence: the reference all-gathers the (variable-size) entry lists of all
    processes and then takes, per class, ``n_c`` = number of gathered entries of ``c`` and their
    mean. Both only depend on the per-class (count, sum) pairs, and ``count_c = sum_p count_{c,p}``,
    ``sum_c = sum_p sum_{c,p}``. So a fixed-size SUM all-reduce of a ``(2, C + 1)`` tensor of
    per-class (count, sum) gives exactly the same ``n_c`` and ``mean_c = sum_c / count_c`` (up to
    floating-point summation order) without any variable-size gather.
    """

    def __init__(
        self,
        num_classes: int,
        momentum: float = 0.9,
        background_value: float = 0.01,
        init_value: float = 0.01,
        group=None,
    ):
        super().__init__(num_classes, group)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.background_value = float(background_value)
        self._register_statistic("score", self.num_classes + 1, init_value)
        with torch.no_grad():
            self.score[self.num_classes] = self.background_value

    @property
    def background_index(self) -> int:
        return self.num_classes

    @torch.no_grad()
    def update(self, class_indices: Tensor, values: Tensor) -> Tensor:
        """Fold this step's entries (local to this process) into ``s``; returns the updated
        ``score``.

        Args:
            class_indices: ``(E,)`` integer class of each entry, in ``[0, C]`` (``C`` = background,
                accepted and overwritten by the background reset).
            values: ``(E,)`` entry values (mean scores), detached.
        Every process must call this every step (possibly with ``E == 0``): it all-reduces.
        """
        class_indices = class_indices.reshape(-1)
        values = values.reshape(-1)
        if class_indices.numel() != values.numel():
            raise ValueError(f"{class_indices.numel()} class indices for {values.numel()} values")
        device = self.score.device
        index = class_indices.to(device=device, dtype=torch.long)
        # Checked where it is free; on an accelerator the check would read back to the host every
        # step, and index_add_ below asserts the range on the device anyway.
        if (
            index.device.type == "cpu"
            and index.numel() > 0
            and bool(((index < 0) | (index > self.num_classes)).any())
        ):
            raise ValueError(f"class indices must lie in [0, {self.num_classes}]")
        stats = torch.zeros(2, self.num_classes + 1, dtype=torch.float32, device=device)
        stats[0].index_add_(0, index, torch.ones(index.numel(), dtype=torch.float32, device=device))
        stats[1].index_add_(0, index, values.detach().to(device=device, dtype=torch.float32))
        self.all_reduce_(stats)
        count, total = stats[0], stats[1]
        has_entries = count > 0
        mean = total / count.clamp(min=1.0)
        decay = torch.pow(torch.full_like(count, self.momentum), count)  # a^{n_c}; 1 where n_c == 0
        updated = decay * self.score + (1.0 - decay) * mean
        self.score.copy_(torch.where(has_entries, updated, self.score))
        self.score[self.num_classes] = self.background_value
        return self.score

    @staticmethod
    def entries_by_instance(
        class_indices: Tensor, values: Tensor, instance_ids: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Average per-RoI values per instance: one entry (class, mean value) per distinct instance
        id.

        Args:
            class_indices: ``(R,)`` class of each positive RoI (its GT's class).
            values: ``(R,)`` e.g. the softmax probability of that class for each positive RoI.
            instance_ids: ``(R,)`` id of each RoI's GT instance, unique over the batch (e.g.
                ``image_offset + matched_gt_index``).
        Returns:
            ``(class_indices (I,), mean values (I,))`` over the ``I`` distinct instances.
        """
        class_indices = class_indices.reshape(-1)
        values = values.detach().reshape(-1).float()
        instance_ids = instance_ids.reshape(-1)
        if not (class_indices.numel() == values.numel() == instance_ids.numel()):
            raise ValueError("class_indices, values and instance_ids must have the same length")
        if instance_ids.numel() == 0:
            return class_indices.new_zeros(0, dtype=torch.long), values.new_zeros(0)
        unique_ids, inverse = torch.unique(instance_ids, return_inverse=True)
        num = unique_ids.numel()
        sums = values.new_zeros(num).index_add_(0, inverse, values)
        counts = values.new_zeros(num).index_add_(0, inverse, torch.ones_like(values))
        classes = class_indices.new_zeros(num, dtype=torch.long).scatter_(
            0, inverse, class_indices.long()
        )
        return classes, sums / counts

    def values(self) -> Tensor:
        return self.score.detach()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, momentum={self.momentum}, "
            f"background_value={self.background_value}"
        )
