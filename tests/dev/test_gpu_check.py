"""dev/gpu_check.sh: refuses clearly without CUDA, and its plan covers what it promises (every
method family's tiny config in fp32 and AMP, the NCCL group, the CUDA benchmarks)."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "dev"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the check would run")
def test_refuses_without_cuda():
    for cmd in (["bash", "dev/gpu_check.sh"], [sys.executable, "dev/gpu_check.py"]):
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env=dict(os.environ, PY=sys.executable),
            timeout=300,
        )
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        assert "no CUDA device" in proc.stderr and "--plan" in proc.stderr


def test_plan_covers_every_family_in_fp32_and_amp():
    args = type("Args", (), {"iters": 20, "only": []})()
    steps = gpu_check.plan(args)
    families = (
        "Libra Faster R-CNN",
        "Libra Mask R-CNN",
        "Libra RetinaNet",
        "RGA + PRM",
        "EFL RetinaNet",
        "LOCE stage 1",
        "LOCE stage 2",
    )
    for family in families:
        for precision in ("fp32", "amp"):
            assert any(s.startswith("train {} [{}]".format(family, precision)) for s in steps)
    assert any("NCCL" in s for s in steps) and any("pytest -m cuda" in s for s in steps)
    assert sum(s.startswith("benchmark on cuda") for s in steps) == len(gpu_check.BENCHMARKS)
    for _, config, _ in gpu_check.TRAININGS:
        assert os.path.exists(os.path.join(REPO_ROOT, config)), config
    args.only = ["LOCE"]
    assert all("loce" in s.lower() for s in gpu_check.plan(args)) and gpu_check.plan(args)


def test_every_benchmark_takes_the_device_option():
    for cmd in gpu_check.BENCHMARKS:
        with open(os.path.join(REPO_ROOT, cmd[0])) as f:
            src = f.read()
        assert "add_device_argument(" in src or '"--device"' in src, cmd[0]
