"""Start one or many training processes on CPUs or GPUs, on one or many machines.

The processes are started the way Detectron2's ``launch`` starts them (spawned, one per GPU, a
per-machine process group for ``comm.get_local_rank()``), with three differences:

* Without CUDA they run on CPUs and talk over gloo (Detectron2 0.6's ``launch`` asserts CUDA);
  ``--num-gpus N`` then means N CPU processes per machine, each with its share of the cores.
* On one machine, the rendezvous port is bound by this (parent) process and held until the workers
  end: two runs started at once can never pick the same port. Detectron2 picks a free port and
  releases it before the workers bind it, and its argument parser's default ``--dist-url`` is one
  fixed port per user, so two concurrent runs collide (``EADDRINUSE``).
* ``init_single_process_group`` forms a process group even for one process (the GPU check uses it
  to run the methods' all-reduces through NCCL on one GPU).
"""

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from ..utils.compat import create_local_process_group

__all__ = ["launch", "launch_from_args", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
LOCALHOST = "127.0.0.1"
logger = logging.getLogger(__name__)


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
    use_cuda: bool = None,
    init_single_process_group: bool = False,
):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes.

    Args:
        num_gpus_per_machine: processes per machine (GPUs, or CPU processes without CUDA).
        dist_url: "auto" (or None) for a port on this machine chosen without a race (single
            machine only), else e.g. "tcp://host:port", the same on every machine.
        use_cuda: force the choice of device and backend (NCCL on CUDA, gloo on CPU); default:
            CUDA when available.
        init_single_process_group: start a process (and a process group) even when the world has
            a single process; by default it runs ``main_func`` in this process without one.
    """
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1 and not init_single_process_group:
        return main_func(*args)
    if use_cuda and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            "--num-gpus {} but this machine has {} CUDA devices".format(
                num_gpus_per_machine, torch.cuda.device_count()
            )
        )
    store = None
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError(
                "dist_url='auto' cannot be used with several machines: give tcp://host:port"
            )
        # Port 0: the OS picks a free port, and this process keeps it bound for the whole run.
        store = dist.TCPStore(LOCALHOST, 0, is_master=True, wait_for_workers=False, timeout=timeout)
        rendezvous = ("store", LOCALHOST, store.port)
        logger.info(
            "Process group rendezvous on %s:%d (held by the launcher)", LOCALHOST, store.port
        )
    else:
        rendezvous = ("url", dist_url)
    mp.start_processes(
        _worker,
        nprocs=num_gpus_per_machine,
        args=(
            main_func,
            world_size,
            num_gpus_per_machine,
            machine_rank,
            rendezvous,
            args,
            timeout,
            use_cuda,
        ),
        daemon=False,
        start_method="spawn",
    )
    del store  # released only now that every worker has ended


def single_machine_dist_url(args):
    """``args.dist_url``, with the argument parser's fixed per-user default replaced by "auto" on a
    single machine (an explicit ``--dist-url`` is kept)."""
    parser_default = default_argument_parser().get_default("dist_url")
    if args.num_machines == 1 and args.dist_url == parser_default:
        return "auto"
    return args.dist_url


def launch_from_args(main_func, args):
    """``main_func(args)`` in the processes that Detectron2's argument parser's ``args`` ask for
    (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``)."""
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=single_machine_dist_url(args),
        args=(args,),
    )


def _worker(
    local_rank,
    main_func,
    world_size,
    per_machine,
    machine_rank,
    rendezvous,
    args,
    timeout,
    use_cuda,
):
    global_rank = machine_rank * per_machine + local_rank
    if use_cuda:
        torch.cuda.set_device(local_rank)
    else:
        # Share the machine's cores between its processes instead of oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
    backend = "nccl" if use_cuda else "gloo"
    if rendezvous[0] == "store":
        _, host, port = rendezvous
        store = dist.TCPStore(host, port, is_master=False, timeout=timeout)
        dist.init_process_group(
            backend=backend, store=store, world_size=world_size, rank=global_rank, timeout=timeout
        )
    else:
        dist.init_process_group(
            backend=backend,
            init_method=rendezvous[1],
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    create_local_process_group(per_machine)
    comm.synchronize()
    try:
        main_func(*args)
        # every rank has finished before any closes its connections: a rank that tears its
        # gloo pairs down while a peer still reads from them can abort that peer
        comm.synchronize()
    finally:
        dist.destroy_process_group()
