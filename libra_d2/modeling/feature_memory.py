"""Memory-augmented Feature Sampling (MFS) of LOCE: box generator, per-class feature memory and
the score-guided class sampler, as small, separately testable pieces.

Paper: "Exploring Classification Equilibrium in Long-Tailed Object Detection" (Feng et al.,
ICCV 2021), section 3.3. The pieces are used during the decoupled fine-tuning stage only (the
backbone is frozen there, so stored RoI features stay valid across iterations):

* :func:`jitter_boxes` -- eq. (5): dense boxes around each GT box, from which RoIAlign features
  are pooled and pushed into the memory.
* :class:`FeatureMemory` -- one FIFO queue of ``M`` (default 80) items per foreground class,
  holding RoI features and their box-regression targets.
* :func:`sample_memory_classes` -- eq. (7)-(8): ``k`` classes drawn with replacement with
  ``p_y`` proportional to ``1 / s_y`` over the classes that have stored features; the memory then
  returns ``m`` items of each via :meth:`FeatureMemory.sample`.

Box jitter, worst case
----------------------
Each coordinate moves by ``d = (2u - 1) * w/6`` (x) or ``(2u - 1) * h/6`` (y), ``u ~ U(0, 1)``
independently -- the ``+- eta * w/6`` of eq. (5) with a random sign, i.e. ``d ~ U(-w/6, w/6)``.
Per axis a side either cuts into the GT (uncovered length ``a``) or grows outside it (extra
length ``b``), ``a + b <= w/3``. The IoU decreases in both, and the minimum over the box is the
full shrink on all four sides (x1 and y1 moved in by w/6, h/6; x2 and y2 moved in likewise): the
box is ``2w/3 x 2h/3`` inside the GT, so

    IoU_min = (2/3)^2 = 4/9 ~ 0.444.

Other corners: full growth on all sides 1 / (4/3)^2 = 9/16 = 0.5625; pure shift on both axes
(5/6)^2 / (2 - (5/6)^2) = 25/47 ~ 0.532; shrink one axis + shift the other 0.5 exactly. The 4/9
bound is attained only at that corner (the set with IoU < 4/9 + e has volume O(e^4)): over 4e7
unclipped samples the smallest IoU seen was 0.451, the fraction with IoU > 0.5 is 0.99985 (about
1.5 in 10^4 fall in [4/9, 0.5]), mean IoU 0.726, 1% quantile ~0.577.
Clipping to the image can only raise the IoU when the GT box lies inside the image (the part of
the jittered box that is cut off does not intersect the GT), so the bound holds after clipping.
The paper's claim that the generator "can obtain any potential positive box (IoU > 0.5)" is
about coverage; it does not make every jittered box positive, hence the optional ``min_iou``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from detectron2.structures.boxes import Boxes, matched_pairwise_iou
from torch import Tensor

__all__ = ["jitter_boxes", "FeatureMemory", "sample_memory_classes"]

DeviceLike = Union[str, torch.device]


def _rand(shape, generator: Optional[torch.Generator], device: torch.device) -> Tensor:
    """U[0, 1) float32 numbers on ``device``, drawn from ``generator`` if given.

    The numbers are drawn on the generator's own device (a CPU generator can drive CUDA data) and
    then moved, so that a seeded generator gives the same result whatever the data's device.
    """
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _clip(boxes: Tensor, image_size: Optional[Tuple[int, int]]) -> Tensor:
    if image_size is None:
        return boxes
    clipped = Boxes(boxes)
    clipped.clip(image_size)
    return clipped.tensor


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    return matched_pairwise_iou(Boxes(a), Boxes(b))


@torch.no_grad()
def jitter_boxes(
    gt_boxes: Tensor,
    num_jitter: int = 16,
    image_size: Optional[Tuple[int, int]] = None,
    generator: Optional[torch.Generator] = None,
    min_iou: Optional[float] = None,
    max_rounds: int = 20,
) -> Tensor:
    """Dense boxes around GT boxes, LOCE eq. (5).

    Every coordinate of every copy is moved independently by ``U(-1, 1) * w/6`` (x1, x2) or
    ``U(-1, 1) * h/6`` (y1, y2), with ``w, h`` the GT box size, then the box is clipped to the
    image.

    Args:
        gt_boxes: (N, 4) XYXY boxes (absolute coordinates), or a detectron2 ``Boxes``.
        num_jitter: copies per GT box (16 in LOCE).
        image_size: ``(height, width)`` to clip to, or None for no clipping.
        generator: optional ``torch.Generator`` for reproducible draws (any device).
        min_iou: None (default) = the paper's behaviour, no filtering. Otherwise every returned
            box has IoU >= ``min_iou`` with its GT: failing boxes are re-drawn (rejection sampling,
            at most ``max_rounds`` rounds), and any still failing after that is replaced by the
            (clipped) GT box itself. The output shape is therefore always fixed. With the
            +-1/6 jitter, ``min_iou <= 4/9`` never rejects anything and 0.5 rejects ~1.5e-4 of
            boxes.
        max_rounds: re-draw rounds for ``min_iou``.

    Returns:
        (N * num_jitter, 4) boxes, GT-major: rows ``[i * num_jitter, (i + 1) * num_jitter)`` belong
        to ``gt_boxes[i]`` (labels: ``gt_classes.repeat_interleave(num_jitter)``). Same dtype and
        device as ``gt_boxes``; computed in float32 (Detectron2's ``Boxes``); no gradient.
    """
    gt_boxes = getattr(gt_boxes, "tensor", gt_boxes)  # also accept detectron2 Boxes
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must be (N, 4), got {tuple(gt_boxes.shape)}")
    if num_jitter < 0:
        raise ValueError("num_jitter must be >= 0")
    n = gt_boxes.shape[0] * num_jitter
    if n == 0:
        return gt_boxes.new_zeros((0, 4))
    compute_dtype = torch.float32
    base = gt_boxes.detach().to(compute_dtype).repeat_interleave(num_jitter, dim=0)
    w = base[:, 2] - base[:, 0]
    h = base[:, 3] - base[:, 1]
    scale = torch.stack([w, h, w, h], dim=1) / 6.0

    def draw(rows: int, ref: Tensor, ref_scale: Tensor) -> Tensor:
        u = _rand((rows, 4), generator, base.device).to(compute_dtype)
        return _clip(ref + (2.0 * u - 1.0) * ref_scale, image_size)

    out = draw(n, base, scale)
    if min_iou is not None:
        for _ in range(max_rounds):
            bad = torch.nonzero(_paired_iou(out, base) < min_iou).flatten()
            if bad.numel() == 0:
                break
            out[bad] = draw(bad.numel(), base[bad], scale[bad])
        else:
            bad = _paired_iou(out, base) < min_iou
            out[bad] = _clip(base[bad], image_size)
    return out.to(gt_boxes.dtype)


def _as_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    named = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float": torch.float32,
    }
    if dtype not in named:
        raise ValueError(f"unsupported storage dtype {dtype!r}")
    return named[dtype]


class FeatureMemory:
    """Per-class FIFO ring buffers of RoI features and regression targets (LOCE eq. 6).

    Storage is pre-allocated once: ``features`` (C, M, *feature_shape) in the storage ``dtype``,
    ``targets`` (C, M, target_dim) always float32 (they are tiny: 1.5 MB for LVIS, and regression
    targets are precision-sensitive), plus per-class ``write_ptr`` and ``count`` (C,) int64
    tensors. Queue ``c`` holds only items of class ``c``, so labels are implicit (the queue index)
    and are not stored; :meth:`sample` returns them. Classes are foreground classes only,
    ``0 <= label < num_classes`` (Detectron2's background index C is never stored).

    Invariant: while a queue is not full, its items occupy slots ``[0, count)``; once full,
    ``write_ptr`` points at the oldest item, which the next push overwrites.

    ``device`` is where the buffers live ("cpu" like the reference, which keeps ~4.8 GB per process
    for LVIS in fp32; a CUDA device avoids host-device copies of the sampled rows if memory
    allows). ``dtype`` is the storage precision (float32, float16 or bfloat16; float16 halves the
    footprint with ~1e-3 relative rounding on features). :meth:`sample` casts back to
    ``compute_dtype`` (float32 by default) on the requested device.

    Checkpointing: the memory is a plain object, *not* a module with registered buffers, so it
    never enters the model's ``state_dict`` (that would add GBs to every checkpoint and the memory
    is rebuilt by the class-balanced pre-fill before fine-tuning anyway). :meth:`state_dict` /
    :meth:`load_state_dict` exist so a trainer can checkpoint it explicitly if asked. The memory
    is per process (per GPU); nothing is synchronised across processes.
    """

    def __init__(
        self,
        num_classes: int,
        queue_size: int = 80,
        feature_shape: Sequence[int] = (256, 7, 7),
        target_dim: int = 4,
        device: DeviceLike = "cpu",
        dtype: Union[torch.dtype, str] = torch.float32,
        compute_dtype: torch.dtype = torch.float32,
    ):
        if num_classes <= 0 or queue_size <= 0:
            raise ValueError("num_classes and queue_size must be positive")
        self.num_classes = int(num_classes)
        self.queue_size = int(queue_size)
        self.feature_shape = tuple(int(x) for x in feature_shape)
        self.target_dim = int(target_dim)
        self.device = torch.device(device)
        self.dtype = _as_dtype(dtype)
        if not self.dtype.is_floating_point:
            raise ValueError("storage dtype must be a floating point type")
        self.compute_dtype = compute_dtype
        C, M = self.num_classes, self.queue_size
        # zeros (not empty): checkpoints are deterministic and unfilled slots hold no garbage.
        self.features = torch.zeros(
            (C, M) + self.feature_shape, dtype=self.dtype, device=self.device
        )
        self.targets = torch.zeros((C, M, self.target_dim), dtype=torch.float32, device=self.device)
        self.write_ptr = torch.zeros(C, dtype=torch.long, device=self.device)
        self.count = torch.zeros(C, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ footprint
    @staticmethod
    def estimate_nbytes(
        num_classes: int,
        queue_size: int,
        feature_shape: Sequence[int],
        dtype: Union[torch.dtype, str] = torch.float32,
        target_dim: int = 4,
    ) -> int:
        """Bytes :class:`FeatureMemory` allocates for these settings (equals :meth:`nbytes`)."""
        feat = 1
        for x in feature_shape:
            feat *= int(x)
        itemsize = torch.empty((), dtype=_as_dtype(dtype)).element_size()
        slots = int(num_classes) * int(queue_size)
        return slots * feat * itemsize + slots * int(target_dim) * 4 + 2 * int(num_classes) * 8

    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(
            t.numel() * t.element_size()
            for t in (self.features, self.targets, self.write_ptr, self.count)
        )

    # ------------------------------------------------------------------ queries
    def available(self) -> Tensor:
        """BoolTensor (C,) on the storage device: classes with at least one stored item."""
        return self.count > 0

    def __len__(self) -> int:
        return int(self.count.sum())

    def get_class(self, cls: int) -> Tuple[Tensor, Tensor]:
        """Stored (features, targets) of one class, oldest first (for inspection / tests)."""
        n = int(self.count[cls])
        start = int(self.write_ptr[cls]) - n
        slots = torch.arange(start, start + n, device=self.device) % self.queue_size
        return self.features[cls, slots], self.targets[cls, slots]

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def push(self, features: Tensor, targets: Tensor, labels: Tensor) -> None:
        """Enqueue ``features[i]`` / ``targets[i]`` into the queue of ``labels[i]``.

        Vectorised over all items: items of one class take consecutive slots in their order of
        appearance, wrapping around; when a class receives more than ``M`` items (in total with
        what it holds) the oldest are dropped, so exactly the newest ``M`` survive. Only those rows
        are copied to the storage device. Inputs are detached; features are cast to the storage
        dtype.

        Args:
            features: (n, *feature_shape), any device / float dtype.
            targets: (n, target_dim).
            labels: (n,) integer classes in [0, num_classes).
        """
        n = labels.numel()
        if features.shape != (n,) + self.feature_shape:
            raise ValueError(
                f"features must be {(n,) + self.feature_shape}, got {tuple(features.shape)}"
            )
        if targets.shape != (n, self.target_dim):
            raise ValueError(f"targets must be {(n, self.target_dim)}, got {tuple(targets.shape)}")
        if n == 0:
            return
        C, M = self.num_classes, self.queue_size
        lab = labels.reshape(-1).to(device=self.device, dtype=torch.long)
        if int(lab.min()) < 0 or int(lab.max()) >= C:
            raise ValueError(f"labels must lie in [0, {C}); background is never stored")
        per_class = torch.bincount(lab, minlength=C)
        order = torch.argsort(lab, stable=True)  # grouped by class, push order kept within a class
        sorted_lab = lab[order]
        first = torch.cumsum(per_class, 0) - per_class  # start of each class in the sorted order
        rank = torch.arange(n, device=self.device) - first[sorted_lab]  # 0.. within its class
        keep = rank >= per_class[sorted_lab] - M  # the newest M of each class
        src = order[keep]
        cls = sorted_lab[keep]
        slot = (self.write_ptr[cls] + rank[keep]) % M  # distinct: <= M consecutive ranks per class
        src_dev = src.to(features.device)
        self.features[cls, slot] = features.detach()[src_dev].to(
            device=self.device, dtype=self.dtype
        )
        self.targets[cls, slot] = targets.detach()[src_dev].to(
            device=self.device, dtype=torch.float32
        )
        self.write_ptr.copy_((self.write_ptr + per_class) % M)
        self.count.copy_((self.count + per_class).clamp(max=M))

    def reset(self) -> None:
        """Empty all queues (buffers keep their allocation)."""
        self.write_ptr.zero_()
        self.count.zero_()
        self.features.zero_()
        self.targets.zero_()

    # ------------------------------------------------------------------ read
    @torch.no_grad()
    def sample(
        self,
        classes: Tensor,
        m: int,
        device: Optional[DeviceLike] = None,
        dtype: Optional[torch.dtype] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Draw ``m`` stored items for every entry of ``classes`` (repeats allowed).

        For each requested entry the ``m`` items are drawn uniformly from that class's filled
        slots, without replacement when the queue holds at least ``m`` items; otherwise every stored
        item is taken once and the remainder is drawn with replacement. Repeated entries of a class
        are drawn independently.

        Entries whose queue is empty are **skipped** (no rows, no error); the returned ``labels``
        show which classes were served. :func:`sample_memory_classes` only proposes classes with
        ``available()`` True, so nothing is skipped in the normal flow.

        Returns:
            ``(features, targets, labels)``: (k' * m, *feature_shape) in ``dtype`` (default
            ``compute_dtype``), (k' * m, target_dim) float32, (k' * m,) int64, all on ``device``
            (default: the storage device); k' = number of entries with a non-empty queue, rows
            class-major in the order of ``classes``.
        """
        out_device = self.device if device is None else torch.device(device)
        out_dtype = self.compute_dtype if dtype is None else dtype
        cls = classes.reshape(-1).to(device=self.device, dtype=torch.long)
        if cls.numel() and (int(cls.min()) < 0 or int(cls.max()) >= self.num_classes):
            raise ValueError(f"classes must lie in [0, {self.num_classes})")
        counts = self.count[cls]
        cls = cls[counts > 0]
        counts = counts[counts > 0]
        k, M = cls.numel(), self.queue_size
        if k == 0 or m <= 0:
            return (
                torch.zeros((0,) + self.feature_shape, dtype=out_dtype, device=out_device),
                torch.zeros((0, self.target_dim), dtype=torch.float32, device=out_device),
                torch.zeros((0,), dtype=torch.long, device=out_device),
            )
        slot_ids = torch.arange(M, device=self.device)
        # random permutation of the filled slots [0, count) first, unfilled ones after them
        keys = _rand((k, M), generator, self.device)
        keys = keys.masked_fill(slot_ids[None, :] >= counts[:, None], 2.0)
        perm = torch.argsort(keys, dim=1)
        cols = torch.arange(m, device=self.device)
        no_repl = perm[:, cols.clamp(max=M - 1)]
        repl = (_rand((k, m), generator, self.device) * counts[:, None]).long()
        repl = torch.minimum(repl, counts[:, None] - 1)
        slots = torch.where(cols[None, :] < counts[:, None], no_repl, repl)
        rows = cls[:, None].expand(k, m)
        feats = self.features[rows, slots].reshape((k * m,) + self.feature_shape)
        tgts = self.targets[rows, slots].reshape(k * m, self.target_dim)
        labels = rows.reshape(-1)
        return (
            feats.to(device=out_device, dtype=out_dtype),
            tgts.to(device=out_device),
            labels.to(device=out_device),
        )

    # ------------------------------------------------------------------ placement / checkpoint
    def to(self, device: DeviceLike) -> "FeatureMemory":
        """Move the buffers (in place) and return self."""
        self.device = torch.device(device)
        for name in ("features", "targets", "write_ptr", "count"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    def state_dict(self) -> Dict[str, object]:
        """Buffers and settings (tensors by reference, like ``nn.Module.state_dict``).

        Only needed when a trainer chooses to checkpoint the memory; the model checkpoint never
        contains it. For LVIS in fp32 this is ~4.8 GB.
        """
        return {
            "num_classes": self.num_classes,
            "queue_size": self.queue_size,
            "feature_shape": list(self.feature_shape),
            "target_dim": self.target_dim,
            "features": self.features,
            "targets": self.targets,
            "write_ptr": self.write_ptr,
            "count": self.count,
        }

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Copy a :meth:`state_dict` in, casting to this memory's storage dtype and device."""
        for key, mine in (
            ("num_classes", self.num_classes),
            ("queue_size", self.queue_size),
            ("feature_shape", list(self.feature_shape)),
            ("target_dim", self.target_dim),
        ):
            theirs = list(state[key]) if key == "feature_shape" else int(state[key])
            if theirs != mine:
                raise ValueError(
                    f"FeatureMemory {key} mismatch: checkpoint {theirs}, memory {mine}"
                )
        count = torch.as_tensor(state["count"], dtype=torch.long)
        ptr = torch.as_tensor(state["write_ptr"], dtype=torch.long)
        if count.shape != self.count.shape or ptr.shape != self.write_ptr.shape:
            raise ValueError("FeatureMemory write_ptr / count shape mismatch")
        if bool(
            (count < 0).any()
            or (count > self.queue_size).any()
            or (ptr < 0).any()
            or (ptr >= self.queue_size).any()
        ):
            raise ValueError("FeatureMemory write_ptr / count out of range")
        self.features.copy_(state["features"])
        self.targets.copy_(state["targets"])
        self.write_ptr.copy_(ptr)
        self.count.copy_(count)

    def __repr__(self) -> str:
        return (
            f"FeatureMemory(num_classes={self.num_classes}, queue_size={self.queue_size}, "
            f"feature_shape={self.feature_shape}, dtype={self.dtype}, device={self.device}, "
            f"stored={len(self)}, nbytes={self.nbytes()})"
        )


@torch.no_grad()
def sample_memory_classes(
    mean_scores_fg: Tensor,
    k: int = 8,
    available: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    eps: float = 1e-12,
) -> Tensor:
    """LOCE's probabilistic class sampler, eq. (7)-(8).

    Draws ``k`` classes **with replacement**, ``p_y = (1 / s_y) / sum_{y' available} 1 / s_{y'}``
    over the available classes; unavailable classes have probability exactly 0.

    Args:
        mean_scores_fg: (C,) foreground mean scores (Detectron2 layout: pass ``s[:-1]``, the
            background entry excluded). Clamped to ``eps`` before inverting; detached.
        k: number of draws (8 per GPU in LOCE).
        available: (C,) bool, classes with stored features (``FeatureMemory.available()``);
            None = all classes.
        generator: optional ``torch.Generator`` (any device) for reproducible draws.

    Returns:
        (k,) int64 class indices on ``mean_scores_fg``'s device; an empty (0,) tensor when no
        class is available (or k == 0).
    """
    s = mean_scores_fg.detach().reshape(-1)
    if available is None:
        avail = torch.ones_like(s, dtype=torch.bool)
    else:
        avail = available.reshape(-1).to(device=s.device, dtype=torch.bool)
        if avail.numel() != s.numel():
            raise ValueError(
                f"available has {avail.numel()} entries, mean_scores_fg {s.numel()} "
                "(pass the foreground scores s[:-1])"
            )
    if k <= 0 or not bool(avail.any()):
        return torch.zeros((0,), dtype=torch.long, device=s.device)
    inv = 1.0 / s.to(torch.float64).clamp(min=eps)
    weights = torch.where(avail, inv, torch.zeros_like(inv))
    draw_device = s.device if generator is None else generator.device
    idx = torch.multinomial(weights.to(draw_device), k, replacement=True, generator=generator)
    return idx.to(s.device)
