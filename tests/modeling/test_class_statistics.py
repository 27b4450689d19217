"""Tests for libra_d2.modeling.class_statistics (per-class running statistics as buffers)."""

import datetime
import io
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from libra_d2.modeling.class_statistics import (
    ClassGradientRatio,
    MeanClassScore,
    log_to_storage,
)
from libra_d2.utils.comm import all_reduce_sum


# --------------------------------------------------------------------------------------------------
# accumulate mode
# --------------------------------------------------------------------------------------------------
def test_gradient_ratio_by_hand():
    stats = ClassGradientRatio(4)
    assert torch.equal(
        stats.ratio, torch.ones(4)
    )  # g = 1 before any update: EFL starts as focal loss
    stats.update(torch.tensor([1.0, 0.0, 3.0, 2.0]), torch.tensor([2.0, 1.0, 1.0, 0.0]))
    assert torch.allclose(stats.pos_grad, torch.tensor([1.0, 0.0, 3.0, 2.0]))
    assert torch.allclose(stats.neg_grad, torch.tensor([2.0, 1.0, 1.0, 0.0]))
    # 1/2, 0/1, 3/1 clamped to 1, and no negatives yet -> 1
    assert torch.allclose(stats.ratio, torch.tensor([0.5, 0.0, 1.0, 1.0]))
    stats.update(torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([2.0, 3.0, 5.0, 4.0]))
    assert torch.allclose(stats.ratio, torch.tensor([2.0 / 4.0, 1.0 / 4.0, 3.0 / 6.0, 2.0 / 4.0]))
    assert stats.ratio.dtype == torch.float32 and not stats.ratio.requires_grad
    stats.reset()
    assert torch.equal(stats.pos_grad, torch.zeros(4)) and torch.equal(stats.ratio, torch.ones(4))
    with pytest.raises(ValueError):
        stats.update(torch.zeros(3), torch.zeros(3))


# --------------------------------------------------------------------------------------------------
# EMA mode
# --------------------------------------------------------------------------------------------------
def test_mean_class_score_by_hand():
    stats = MeanClassScore(3, momentum=0.9, background_value=0.01)
    assert torch.allclose(stats.score, torch.full((4,), 0.01))
    # class 0: n = 2 entries (0.5, 0.7) -> a^2 s + (1 - a^2) 0.6; class 2: n = 1 -> a s + (1 - a)
    # 0.3; class 1: no entry -> unchanged; background entry -> reset to 0.01 whatever it was given
    stats.update(torch.tensor([0, 2, 0, 3]), torch.tensor([0.5, 0.3, 0.7, 0.9]))
    s0 = 0.81 * 0.01 + 0.19 * 0.6
    s2 = 0.9 * 0.01 + 0.1 * 0.3
    assert torch.allclose(stats.score, torch.tensor([s0, 0.01, s2, 0.01]), rtol=1e-6)
    # n = 3 entries of one class: a^3 form with the current value
    stats.update(torch.tensor([0, 0, 0]), torch.tensor([0.2, 0.4, 0.9]))
    s0 = 0.9**3 * s0 + (1 - 0.9**3) * 0.5
    assert stats.score[0].item() == pytest.approx(s0, rel=1e-6)
    assert stats.score[3].item() == pytest.approx(0.01)
    # no entries at all: nothing changes
    before = stats.score.clone()
    stats.update(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert torch.equal(stats.score, before)
    # the a^n form equals n sequential EMA steps when all entries are equal
    seq = MeanClassScore(2)
    one = MeanClassScore(2)
    for _ in range(4):
        seq.update(torch.tensor([1]), torch.tensor([0.8]))
    one.update(torch.tensor([1, 1, 1, 1]), torch.tensor([0.8, 0.8, 0.8, 0.8]))
    assert torch.allclose(seq.score, one.score, rtol=1e-6)
    with pytest.raises(ValueError):
        stats.update(torch.tensor([4]), torch.tensor([0.5]))
    stats.reset()
    assert torch.allclose(stats.score, torch.full((4,), 0.01))


def test_mean_class_score_custom_background_and_init():
    stats = MeanClassScore(2, momentum=0.5, background_value=0.05, init_value=0.2)
    assert torch.allclose(stats.score, torch.tensor([0.2, 0.2, 0.05]))
    stats.update(torch.tensor([1]), torch.tensor([1.0]))
    assert torch.allclose(stats.score, torch.tensor([0.2, 0.6, 0.05]))


def test_entries_by_instance():
    classes = torch.tensor([3, 1, 3, 3, 1])
    probs = torch.tensor([0.2, 0.5, 0.4, 0.9, 0.7])
    instance = torch.tensor([10, 4, 10, 11, 4])
    cls, values = MeanClassScore.entries_by_instance(classes, probs, instance)
    # instances 4 (class 1: 0.5, 0.7), 10 (class 3: 0.2, 0.4), 11 (class 3: 0.9)
    assert cls.tolist() == [1, 3, 3]
    assert torch.allclose(values, torch.tensor([0.6, 0.3, 0.9]))
    cls, values = MeanClassScore.entries_by_instance(torch.zeros(0), torch.zeros(0), torch.zeros(0))
    assert cls.numel() == 0 and values.numel() == 0


# --------------------------------------------------------------------------------------------------
# buffers: state_dict, checkpoints, dtype, device
# --------------------------------------------------------------------------------------------------
class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.grad_stats = ClassGradientRatio(3)
        self.scores = MeanClassScore(3)


def test_buffers_survive_state_dict_and_weights_only_load(tmp_path):
    model = _Model()
    model.grad_stats.update(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0]))
    model.scores.update(torch.tensor([0, 2]), torch.tensor([0.5, 0.7]))
    state = model.state_dict()
    for key in ("grad_stats.pos_grad", "grad_stats.neg_grad", "scores.score"):
        assert key in state and state[key].dtype == torch.float32

    path = tmp_path / "model.pth"
    torch.save({"model": state}, path)
    loaded = torch.load(path, weights_only=True)["model"]
    fresh = _Model()
    assert not torch.equal(fresh.scores.score, model.scores.score)
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh.grad_stats.pos_grad, model.grad_stats.pos_grad)
    assert torch.equal(fresh.grad_stats.neg_grad, model.grad_stats.neg_grad)
    assert torch.equal(fresh.grad_stats.ratio, model.grad_stats.ratio)
    assert torch.equal(fresh.scores.score, model.scores.score)

    # in-memory round trip of a statistic module alone
    buffer = io.BytesIO()
    torch.save(model.scores.state_dict(), buffer)
    buffer.seek(0)
    alone = MeanClassScore(3)
    alone.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(alone.score, model.scores.score)

    # casting the model keeps the statistics fp32; .to(device) moves them
    model.half()
    assert model.fc.weight.dtype == torch.float16
    assert (
        model.grad_stats.pos_grad.dtype == torch.float32
        and model.scores.score.dtype == torch.float32
    )
    model.to("cpu")
    assert model.scores.score.device.type == "cpu"


def test_detectron2_checkpointer_round_trip(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    model = _Model()
    model.grad_stats.update(torch.tensor([1.0, 0.5, 0.25]), torch.tensor([2.0, 2.0, 2.0]))
    model.scores.update(torch.tensor([1]), torch.tensor([0.9]))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    fresh = _Model()
    DetectionCheckpointer(fresh).load(str(tmp_path / "model_final.pth"))
    assert torch.equal(fresh.grad_stats.ratio, model.grad_stats.ratio)
    assert torch.equal(fresh.scores.score, model.scores.score)


# --------------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------------
def test_log_to_storage():
    from detectron2.utils.events import EventStorage

    groups = ["r", "f", "c", "f"]
    values = torch.tensor([0.1, 0.5, 0.3, 0.7, 123.0])  # trailing background entry is ignored
    assert log_to_storage("x", groups, values) == {}  # no active storage: no error, nothing written
    with EventStorage(start_iter=0) as storage:
        written = log_to_storage("efl/g", groups, values)
        assert list(written) == ["efl/g/r", "efl/g/c", "efl/g/f"]
        assert written["efl/g/r"] == pytest.approx(0.1)
        assert written["efl/g/c"] == pytest.approx(0.3)
        assert written["efl/g/f"] == pytest.approx(0.6)
        assert storage.history("efl/g/f").latest() == pytest.approx(0.6)
        storage.iter = 3
        assert log_to_storage("efl/g", groups, values, period=2) == {}
        storage.iter = 4
        assert "efl/g/r" in log_to_storage("efl/g", groups, values, period=2)
        scores = MeanClassScore(4)
        assert scores.log_to_storage("loce/score", groups)["loce/score/f"] == pytest.approx(0.01)
        with pytest.raises(ValueError):
            log_to_storage("bad", groups, torch.ones(2))


# --------------------------------------------------------------------------------------------------
# two processes (gloo, CPU) == one process seeing the whole batch
# --------------------------------------------------------------------------------------------------
NUM_CLASSES = 5


def _make_batch():
    gen = torch.Generator().manual_seed(123)
    logits = torch.randn(64, NUM_CLASSES, generator=gen) * 3
    labels = torch.randint(0, NUM_CLASSES + 1, (64,), generator=gen)
    targets = F.one_hot(labels, NUM_CLASSES + 1)[:, :NUM_CLASSES].float()
    entry_classes = torch.tensor([0, 1, 0, 3, 3, 3, 0, 2, 1, 0, 3, 5])
    entry_values = torch.rand(entry_classes.numel(), generator=gen)
    num_pos = float(targets.sum())
    return logits, targets, num_pos, entry_classes, entry_values


def _run_statistics(logits, targets, num_pos, entry_classes, entry_values, steps=2):
    """What every process runs on its share: EFL statistics (accumulate) and mean scores (EMA)."""
    from libra_d2.layers.equalized_focal_loss import EqualizedFocalLoss

    efl = EqualizedFocalLoss(NUM_CLASSES).train()
    scores = MeanClassScore(NUM_CLASSES)
    for step in range(steps):  # a second step also checks that the updated g is used identically
        x = (logits + step).requires_grad_()
        efl(x, targets, normalizer=num_pos).backward()
        scores.update(entry_classes, entry_values * (step + 1) / steps)
    return {
        "pos_grad": efl.statistics.pos_grad.clone(),
        "neg_grad": efl.statistics.neg_grad.clone(),
        "ratio": efl.statistics.ratio.clone(),
        "score": scores.score.clone(),
    }


def _gathered_reference_score(entry_classes, entry_values):
    """The reference's way: all-gather the variable-size entry lists, then the a^n update."""
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (entry_classes.tolist(), entry_values.tolist()))
    score = torch.full((NUM_CLASSES + 1,), 0.01)
    classes = [c for part in gathered for c in part[0]]
    values = [v for part in gathered for v in part[1]]
    for c in range(NUM_CLASSES):
        entries = [v for k, v in zip(classes, values) if k == c]
        if entries:
            decay = 0.9 ** len(entries)
            score[c] = decay * score[c] + (1 - decay) * (sum(entries) / len(entries))
    return score


def _worker(rank, world_size, init_file, out_dir):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.set_num_threads(1)
        logits, targets, num_pos, entry_classes, entry_values = _make_batch()
        anchors = torch.arange(logits.shape[0]).chunk(world_size)[rank]
        entries = torch.arange(entry_classes.numel()).chunk(world_size)[rank]
        result = _run_statistics(
            logits[anchors],
            targets[anchors],
            num_pos,
            entry_classes[entries],
            entry_values[entries],
        )
        scores = MeanClassScore(NUM_CLASSES)
        scores.update(entry_classes[entries], entry_values[entries])
        result["fixed_size_score"] = scores.score.clone()
        result["gathered_score"] = _gathered_reference_score(
            entry_classes[entries], entry_values[entries]
        )
        # non-contiguous input goes through a contiguous copy
        t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
        result["noncontiguous"] = all_reduce_sum(t).clone()
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    world_size = 2
    mp.spawn(
        _worker,
        args=(world_size, str(tmp_path / "dist_init"), str(tmp_path)),
        nprocs=world_size,
        join=True,
    )
    logits, targets, num_pos, entry_classes, entry_values = _make_batch()
    single = _run_statistics(logits, targets, num_pos, entry_classes, entry_values)
    assert torch.all(single["ratio"] < 1)  # a non-trivial state
    for rank in range(world_size):
        result = torch.load(tmp_path / f"rank{rank}.pth", weights_only=True)
        for key in ("pos_grad", "neg_grad", "ratio", "score"):
            assert torch.allclose(result[key], single[key], rtol=1e-5, atol=1e-7), (rank, key)
        # fixed-size (count, sum) all-reduce == all-gather of the entries
        assert torch.allclose(result["fixed_size_score"], result["gathered_score"], rtol=1e-6)
        expected = torch.arange(6, dtype=torch.float32).reshape(2, 3).t() * world_size
        assert torch.equal(result["noncontiguous"], expected)
