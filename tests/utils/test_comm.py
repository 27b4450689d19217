"""libra_d2.utils.comm: the statistics' SUM all-reduce (its 2-process run is in
tests/modeling/test_class_statistics.py)."""

import torch
import torch.distributed as dist

from libra_d2.utils.comm import all_reduce_sum


def test_all_reduce_without_process_group_is_a_noop():
    assert not (dist.is_available() and dist.is_initialized())
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(t) is t and torch.equal(t, torch.tensor([1.0, 2.0]))


def test_backend_device_routing(monkeypatch):
    """Which device a group's backend reduces on (a CUDA tensor meeting gloo goes through the
    CPU)."""
    from libra_d2.utils import comm as cs

    for backend, expected in [
        ("gloo", {"cpu"}),
        ("nccl", {"cuda"}),
        ("cpu:gloo,cuda:nccl", {"cpu", "cuda"}),
        ("mpi", None),
    ]:
        monkeypatch.setattr(cs.dist, "get_backend", lambda group=None, b=backend: b)
        assert cs.backend_device_types() == expected, backend

    # a simulated 2-process gloo group: the reduction sees a contiguous CPU tensor, the result lands
    # in the caller's tensor
    seen = []

    def fake_all_reduce(tensor, op=None, group=None):
        seen.append((tensor.device.type, tensor.is_contiguous()))
        tensor.mul_(2)

    monkeypatch.setattr(cs.dist, "get_backend", lambda group=None: "gloo")
    monkeypatch.setattr(cs, "_world_size", lambda group=None: 2)
    monkeypatch.setattr(cs.dist, "all_reduce", fake_all_reduce)
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    assert cs.all_reduce_sum(t) is t
    assert torch.equal(t, torch.arange(6, dtype=torch.float32).reshape(2, 3).t() * 2)
    assert seen == [("cpu", True)]
