"""Training as a ``submitit`` job: on Slurm, or on this machine through submitit's local executor.

One submitit task runs per machine; it starts that machine's processes with
:func:`~libra_d2.engine.launch.launch_from_args`. The machine rank, the number of machines and the
rendezvous address (the first node, on a port derived from the job id) come from
``submitit.JobEnvironment``. When Slurm preempts the job or its time runs out, submitit calls
:meth:`TrainingJob.checkpoint`: the job is requeued with ``--resume``, so it continues from its
last checkpoint (the trainer's checkpoints and the data loader's position are exact; see
``ExactResume``). ``submitit`` is optional: only this module needs it.
"""

import copy
import zlib

from .launch import launch_from_args

__all__ = ["TrainingJob", "dist_url_of_job", "require_submitit"]

#: the rendezvous ports of multi-machine jobs: BASE_PORT + (a hash of the job id) % PORT_RANGE
BASE_PORT, PORT_RANGE = 29500, 2000


def require_submitit():
    """The ``submitit`` module, or an ImportError that says how to get it."""
    try:
        import submitit
    except ImportError as e:
        raise ImportError(
            "submitting jobs needs the optional package submitit: pip install submitit "
            "(or pip install 'libra_d2[slurm]')"
        ) from e
    return submitit


def dist_url_of_job(hostnames, job_id: str) -> str:
    """``tcp://<first node>:<port>``, the port a function of the job id: every node of a job
    computes the same URL, and two jobs on one node rarely share a port."""
    port = BASE_PORT + zlib.crc32(str(job_id).encode()) % PORT_RANGE
    return "tcp://{}:{}".format(hostnames[0], port)


class TrainingJob:
    """A picklable callable that runs ``main_func(args)`` on this job's machines.

    Args:
        main_func: the launcher's ``main(args)`` (e.g. ``projects/train_net.py``'s).
        args: the launcher's parsed arguments (Detectron2's argument parser); ``num_machines``,
            ``machine_rank`` and ``dist_url`` are set from the job's environment.
    """

    def __init__(self, main_func, args):
        self.main_func = main_func
        self.args = args

    def __call__(self):
        env = require_submitit().JobEnvironment()
        args = copy.copy(self.args)
        args.num_machines = env.num_nodes
        args.machine_rank = env.node
        if env.num_nodes > 1:
            args.dist_url = dist_url_of_job(env.hostnames, env.job_id)
        return launch_from_args(self.main_func, args)

    def checkpoint(self, *unused_args, **unused_kwargs):
        """Called by submitit on preemption or timeout: requeue this job, resuming."""
        args = copy.copy(self.args)
        args.resume = True
        return require_submitit().helpers.DelayedSubmission(TrainingJob(self.main_func, args))
