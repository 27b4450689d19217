"""Start one or many training processes on CPUs or GPUs, on one or many machines.

On machines with CUDA this is Detectron2's own ``launch`` (NCCL). Without CUDA, Detectron2 0.6's
``launch`` refuses to run (it asserts CUDA), so the processes are started here and talk over gloo;
``--num-gpus N`` then means N CPU processes per machine.
"""
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

from ..utils.compat import create_local_process_group

__all__ = ["launch", "launch_from_args", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


def _find_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
    use_cuda: bool = None,
):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes.

    Args:
        num_gpus_per_machine: processes per machine (GPUs, or CPU processes without CUDA).
        dist_url: "auto" for a free local port (single machine), else e.g. "tcp://host:port".
        use_cuda: force the choice of backend; default: CUDA when available.
    """
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda:
        return d2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args=args,
            timeout=timeout,
        )
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url='auto' cannot be used with several machines: give tcp://host:port")
        dist_url = "tcp://127.0.0.1:{}".format(_find_free_port())
    mp.start_processes(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


def launch_from_args(main_func, args):
    """``main_func(args)`` in the processes that Detectron2's argument parser's ``args`` ask for
    (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``)."""
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout):
    global_rank = machine_rank * per_machine + local_rank
    # Share the machine's cores between its processes instead of oversubscribing them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank,
        timeout=timeout,
    )
    create_local_process_group(per_machine)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
