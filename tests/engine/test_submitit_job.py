"""Training as a submitit job (``libra_d2.engine.submitit_job``, ``projects/submit.py``): the
machine rank, machine count and rendezvous come from the job's environment, a preempted job is
requeued with ``--resume``, and a real submission through submitit's local executor trains."""

import argparse
import os

import pytest
from conftest import short_training

submitit = pytest.importorskip("submitit")

from libra_d2.engine import submitit_job  # noqa: E402
from libra_d2.engine.submitit_job import TrainingJob, dist_url_of_job  # noqa: E402


class _Env:
    def __init__(self, num_nodes, node):
        self.num_nodes, self.node = num_nodes, node
        self.hostnames = ["node-a", "node-b"][:num_nodes]
        self.job_id = "4242"


def _args(**kw):
    base = dict(num_gpus=8, num_machines=1, machine_rank=0, dist_url="tcp://x:1", resume=False)
    return argparse.Namespace(**dict(base, **kw))


def _record(job, env, monkeypatch):
    seen = {}
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: env)
    monkeypatch.setattr(
        submitit_job, "launch_from_args", lambda main, args: seen.update(main=main, args=args)
    )
    job()
    return seen


def test_the_job_environment_sets_machines_and_rendezvous(monkeypatch):
    job = TrainingJob(print, _args())
    seen = _record(job, _Env(2, 1), monkeypatch)
    args = seen["args"]
    assert seen["main"] is print
    assert (args.num_machines, args.machine_rank, args.num_gpus) == (2, 1, 8)
    assert args.dist_url == dist_url_of_job(["node-a", "node-b"], "4242")
    assert args.dist_url.startswith("tcp://node-a:")
    assert job.args.machine_rank == 0  # the job's own arguments are not changed
    # every node of the job computes the same URL; it stays in the port range
    port = int(args.dist_url.rsplit(":", 1)[1])
    assert submitit_job.BASE_PORT <= port < submitit_job.BASE_PORT + submitit_job.PORT_RANGE
    # one node: the launcher's own rendezvous is kept
    assert _record(job, _Env(1, 0), monkeypatch)["args"].dist_url == "tcp://x:1"


def test_preemption_requeues_with_resume():
    job = TrainingJob(print, _args())
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    requeued = delayed.function
    assert isinstance(requeued, TrainingJob) and requeued.args.resume is True
    assert job.args.resume is False


def _submit(run_script, tmp_path, *opts, check=True):
    return run_script(
        "projects/submit.py",
        "--cluster",
        "local",
        "--job-dir",
        str(tmp_path / "jobs"),
        "--config-file",
        "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml",
        *opts,
        check=check,
    )


def test_submit_through_the_local_executor(run_script, tmp_path):
    out = tmp_path / "run"
    proc = _submit(
        run_script,
        tmp_path,
        "--wait",
        *short_training(out),
    )
    assert "Submitted job" in proc.stdout and "finished" in proc.stdout
    assert (out / "model_final.pth").is_file()
    logs = os.listdir(tmp_path / "jobs")
    assert any(name.endswith("_log.out") for name in logs), logs


def test_a_bad_config_fails_before_submitting(run_script, tmp_path):
    proc = _submit(run_script, tmp_path, "SOLVER.MAX_ITERS", "2", check=False)
    assert proc.returncode != 0 and "SOLVER.MAX_ITER" in proc.stdout
    assert not (tmp_path / "jobs").exists()
