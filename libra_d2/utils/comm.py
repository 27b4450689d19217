"""Process-group helpers beyond Detectron2's ``detectron2.utils.comm`` (which libra_d2 uses for
ranks, world sizes, barriers and gathers).

:func:`all_reduce_sum` is the one collective of the methods' per-class statistics (EFL's gradient
sums, LOCE's mean scores): a SUM all-reduce that is a no-op on a single process and that routes a
tensor through a device the group's backend can reduce (gloo: CPU tensors, nccl: CUDA tensors).
"""

from typing import Optional

import torch
import torch.distributed as dist
from detectron2.utils import comm
from torch import Tensor

__all__ = ["all_reduce_sum", "backend_device_types"]


def _world_size(group=None) -> int:
    if group is None or comm.get_world_size() == 1:
        return comm.get_world_size()
    return dist.get_world_size(group)


def backend_device_types(group=None) -> Optional[set]:
    """Device types the group's backend can reduce, or None when unknown (then reduce as is)."""
    backend = str(dist.get_backend(group)).lower()
    if ":" in backend:  # multi-device group, e.g. "cpu:gloo,cuda:nccl"
        return {item.split(":", 1)[0].strip() for item in backend.split(",") if ":" in item}
    if backend == "gloo":
        return {"cpu"}
    if backend == "nccl":
        return {"cuda"}
    return None


@torch.no_grad()
def all_reduce_sum(tensor: Tensor, group=None) -> Tensor:
    """SUM-all-reduce ``tensor`` in place across the processes of ``group`` and return it.

    Without an initialised process group (or with one process) it returns ``tensor`` untouched.
    The reduction runs on the tensor's own device when the backend supports it; a CUDA tensor
    meeting a gloo group is reduced through a CPU copy, a CPU tensor meeting an nccl group through
    a copy on the current CUDA device, and the result is copied back into ``tensor``.
    """
    if _world_size(group) == 1:
        return tensor
    device_types = backend_device_types(group)
    if device_types is None or tensor.device.type in device_types:
        if tensor.is_contiguous():
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
            return tensor
        target = tensor.device
    elif "cpu" in device_types:
        target = torch.device("cpu")
    else:
        target = torch.device("cuda", torch.cuda.current_device())
    work = tensor.detach().to(device=target, copy=True).contiguous()
    dist.all_reduce(work, op=dist.ReduceOp.SUM, group=group)
    tensor.copy_(work)
    return tensor
