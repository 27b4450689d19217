"""RankConsistencyCheck: ranks holding the same model pass, a rank that drifted in a parameter or a
method statistic is named, BatchNorm running statistics may differ (per rank by design); and the
launcher's process groups form on a port it holds (two at once)."""

import json
import os
from types import SimpleNamespace

import torch
from torch import nn

from libra_d2.engine import launch
from libra_d2.engine.rank_consistency import (
    RankConsistencyCheck,
    consistency_tensors,
    mismatched_names,
    tensor_fingerprints,
)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.register_buffer("grad_ratio", torch.ones(3))  # a method statistic


def test_consistency_tensors_leave_out_only_batchnorm_running_statistics():
    names = set(consistency_tensors(_Net()))
    assert names == {"fc.weight", "fc.bias", "bn.weight", "bn.bias", "grad_ratio"}


def test_fingerprints_tell_one_changed_element():
    a = torch.randn(1000)
    b = a.clone()
    b[517] = torch.nextafter(b[517], torch.tensor(float("inf")))  # one ulp
    fa, fb = tensor_fingerprints([a]), tensor_fingerprints([b])
    assert torch.equal(fa, tensor_fingerprints([a.clone()]))
    assert mismatched_names(["x"], [fa, fb]) == [("x", 1)]
    # a permutation keeps the sums but not the position-weighted sum
    assert mismatched_names(["x"], [fa, tensor_fingerprints([a.flip(0)])]) == [("x", 1)]
    nan = torch.full((3,), float("nan"))
    assert mismatched_names(["n"], [tensor_fingerprints([nan])] * 2) == []


MODES = ("none", "batchnorm", "parameter", "statistic")


def _check_worker(out_dir):
    from detectron2.utils import comm

    rank = comm.get_rank()
    results = {}
    for mode in MODES:  # one process group for every case (spawning costs seconds)
        net = _Net()
        if rank == 1:
            with torch.no_grad():
                if mode == "parameter":
                    net.fc.weight[0, 0] += 1e-3
                elif mode == "statistic":
                    net.grad_ratio[2] = 0.5
                elif mode == "batchnorm":
                    net.bn.running_mean += 1.0
        hook = RankConsistencyCheck(period=1)
        hook.trainer = SimpleNamespace(model=net, iter=0, max_iter=1)
        try:
            results[mode] = {"checked": hook.check("in the test")}
        except RuntimeError as e:
            results[mode] = {"error": str(e)}
    with open(os.path.join(out_dir, "rank{}.json".format(rank)), "w") as f:
        json.dump(results, f)


def test_two_ranks_checked(tmp_path):
    launch(_check_worker, 2, args=(str(tmp_path),), use_cuda=False)
    results = [json.loads((tmp_path / "rank{}.json".format(r)).read_text()) for r in (0, 1)]
    for mode in MODES:
        if mode in ("none", "batchnorm"):
            assert [r[mode] for r in results] == [{"checked": 5}] * 2, mode
            continue
        name = "fc.weight" if mode == "parameter" else "grad_ratio"
        for r in results:  # every rank raises (none is left waiting in a collective)
            assert "Ranks disagree in the test: 1 tensors differ" in r[mode]["error"], mode
            assert "{} (rank 1)".format(name) in r[mode]["error"], mode


def _group_worker(out_dir):
    import torch.distributed as dist

    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    with open(os.path.join(out_dir, "rank{}".format(dist.get_rank())), "w") as f:
        f.write(str(t.item()))


def test_single_process_group_on_request(tmp_path):
    """``init_single_process_group``: one process, a real process group (the GPU check's NCCL run
    uses this path with CUDA)."""
    launch(_group_worker, 1, args=(str(tmp_path),), use_cuda=False, init_single_process_group=True)
    assert (tmp_path / "rank0").read_text() == "1.0"


def test_parser_default_dist_url_becomes_auto_on_one_machine():
    from detectron2.engine import default_argument_parser

    from libra_d2.engine.launch import single_machine_dist_url

    args = default_argument_parser().parse_args([])
    assert single_machine_dist_url(args) == "auto"
    explicit = default_argument_parser().parse_args(["--dist-url", "tcp://127.0.0.1:1234"])
    assert single_machine_dist_url(explicit) == "tcp://127.0.0.1:1234"
    two = default_argument_parser().parse_args(["--num-machines", "2"])
    assert single_machine_dist_url(two) == two.dist_url  # several machines: never replaced
