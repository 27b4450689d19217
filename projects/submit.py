#!/usr/bin/env python
"""Submit ``train_net.py`` to Slurm through ``submitit`` (optional package: pip install submitit).

    python projects/submit.py --config-file CFG --num-machines 2 --num-gpus 8 \
        --partition learnfair --timeout-min 4320 --job-dir output/jobs/%j [train_net.py options]
    python projects/submit.py --cluster local --config-file CFG --wait ...   # on this machine

Every ``train_net.py`` option works (``--dataset``, ``--resume``, ``--eval-only``, config
overrides). ``--num-machines`` nodes are requested with one task and ``--num-gpus`` GPUs each;
the task starts that node's processes. A job preempted or out of time is requeued and resumes from
its last checkpoint (``libra_d2.engine.submitit_job.TrainingJob.checkpoint``). The config and
datasets are checked here, before anything is submitted. ``--cluster local`` runs the job in a
subprocess of this machine (submitit's local executor): the way to try a submission without Slurm.
"""

import os
import sys

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)

from libra_d2.engine import argument_parser, setup_cfg
from libra_d2.engine.submitit_job import TrainingJob, require_submitit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_net  # noqa: E402  (projects/train_net.py: the job's main)


def get_parser():
    parser = argument_parser()
    parser.add_argument(
        "--cluster",
        choices=("slurm", "local", "debug"),
        default=None,
        help="default: Slurm when sbatch is available, else local",
    )
    parser.add_argument("--job-dir", default="output/jobs/%j", help="submitit's logs (%%j: job id)")
    parser.add_argument("--partition", default=None, help="Slurm partition")
    parser.add_argument("--timeout-min", type=int, default=60 * 72)
    parser.add_argument("--cpus-per-task", type=int, default=10)
    parser.add_argument("--mem-gb", type=int, default=None)
    parser.add_argument("--job-name", default="libra_d2")
    parser.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    submitit = require_submitit()
    # Fail on a bad config or dataset here, not in the queue hours later (writes nothing).
    setup_cfg(args, do_default_setup=False)
    executor = submitit.AutoExecutor(folder=args.job_dir, cluster=args.cluster)
    params = dict(
        name=args.job_name,
        nodes=args.num_machines,
        tasks_per_node=1,
        gpus_per_node=args.num_gpus,
        cpus_per_task=args.cpus_per_task,
        timeout_min=args.timeout_min,
    )
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    executor.update_parameters(**params)
    # train_net is a script, not an installed module: the job gets its main by value.
    import cloudpickle

    cloudpickle.register_pickle_by_value(train_net)
    job = executor.submit(TrainingJob(train_net.main, args))
    print(
        "Submitted job {} ({}); logs in {}".format(job.job_id, executor.cluster, job.paths.folder)
    )
    if args.wait:
        result = job.result()
        print("Job {} finished: {}".format(job.job_id, result))
        return result
    return job


if __name__ == "__main__":
    main()
