"""Every process of a data-parallel run must hold the same model: same parameters, and the same
method statistics (EFL's gradient statistics, LOCE's mean scores), which the methods all-reduce.

A rank that drifts (a statistic updated from local data only, a buffer never synchronised, a
non-deterministic kernel feeding an update) trains a different model from the one rank 0 saves, and
nothing says so. :class:`RankConsistencyCheck` compares a fingerprint of every tensor across ranks
at each checkpoint period and at the end of training, and raises, naming the tensors, when they
differ. BatchNorm running statistics are left out: they are per rank by design when DDP does not
broadcast buffers (Detectron2's setting), as in Detectron2.
"""

import logging
from typing import Dict, Iterable, List, Tuple

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["RankConsistencyCheck", "consistency_tensors", "tensor_fingerprints", "mismatched_names"]

logger = logging.getLogger(__name__)

_PER_RANK_BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_PER_RANK_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def consistency_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The parameters and buffers that every rank must hold identically, by name: all of them but
    the running statistics of (non-synchronised) BatchNorm layers."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    per_rank = {
        "{}.{}".format(name, b) if name else b
        for name, m in model.named_modules()
        if isinstance(m, _PER_RANK_NORMS)
        for b in _PER_RANK_BATCHNORM_BUFFERS
    }
    out = dict(model.named_parameters())
    out.update((k, v) for k, v in model.named_buffers() if k not in per_rank)
    return out


@torch.no_grad()
def tensor_fingerprints(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """``(T, 3)`` float64 on the CPU: sum, sum of squares and a position-weighted sum of each
    tensor. Identical tensors give identical rows on identical hardware and thread counts; a tensor
    changed in any element gives a different row (short of an exact cancellation in all three)."""
    rows = []
    for t in tensors:
        x = t.detach().reshape(-1).double()
        w = (torch.arange(x.numel(), device=x.device) % 997 + 1).double()
        rows.append(torch.stack([x.sum(), (x * x).sum(), (x * w).sum()]))
    if not rows:
        return torch.zeros(0, 3, dtype=torch.float64)
    return torch.stack(rows).cpu()


def mismatched_names(names: List[str], fingerprints: List[torch.Tensor]) -> List[Tuple[str, int]]:
    """``(name, rank)`` for each tensor whose fingerprint on ``rank`` differs from rank 0's (NaN
    equals NaN: a tensor that is NaN on every rank is not a rank mismatch)."""
    ref = fingerprints[0]
    out = []
    for rank, fp in enumerate(fingerprints[1:], start=1):
        if fp.shape != ref.shape:
            raise RuntimeError(
                "rank {} holds {} checked tensors, rank 0 holds {}".format(
                    rank, fp.shape[0], ref.shape[0]
                )
            )
        same = (fp == ref) | (torch.isnan(fp) & torch.isnan(ref))
        out.extend((names[i], rank) for i in torch.nonzero(~same.all(dim=1))[:, 0].tolist())
    return out


class RankConsistencyCheck(HookBase):
    """Checks, every ``period`` iterations and after training, that all ranks hold the same
    parameters and method statistics (see the module doc); a no-op in a single process.

    Raises RuntimeError on every rank (they all see the gathered fingerprints, so none is left
    waiting in a collective) naming up to ``max_names`` tensors that differ.
    """

    def __init__(self, period: int, max_names: int = 10):
        self.period = int(period)
        self.max_names = int(max_names)

    def check(self, where: str) -> int:
        """Compare now; returns the number of tensors checked."""
        if comm.get_world_size() == 1:
            return 0
        tensors = consistency_tensors(self.trainer.model)
        names = sorted(tensors)
        gathered = comm.all_gather(tensor_fingerprints(tensors[k] for k in names))
        bad = mismatched_names(names, gathered)
        if bad:
            shown = ", ".join("{} (rank {})".format(n, r) for n, r in bad[: self.max_names])
            raise RuntimeError(
                "Ranks disagree {}: {} tensors differ from rank 0's: {}{}. Every rank must hold "
                "the same parameters and method statistics.".format(
                    where, len(bad), shown, ", ..." if len(bad) > self.max_names else ""
                )
            )
        logger.info(
            "All %d ranks hold identical parameters and method statistics (%d tensors, "
            "BatchNorm running statistics excluded) %s",
            comm.get_world_size(),
            len(names),
            where,
        )
        return len(names)

    def after_step(self):
        it = self.trainer.iter + 1
        if self.period > 0 and it % self.period == 0 and it != self.trainer.max_iter:
            self.check("at iteration {}".format(it))

    def after_train(self):
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self.check("at the end of training (iteration {})".format(self.trainer.iter + 1))
