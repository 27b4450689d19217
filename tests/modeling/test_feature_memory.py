"""Tests for libra_d2.modeling.feature_memory (LOCE MFS: box jitter, feature memory, sampler)."""

import collections
import io

import pytest
import torch
from detectron2.structures import Boxes, pairwise_iou

from libra_d2.modeling.feature_memory import FeatureMemory, jitter_boxes, sample_memory_classes

WORST_IOU = 4.0 / 9.0  # analytic minimum for the +-1/6 jitter (all four sides moved inwards)


def _random_gt(n, seed, img=(600, 800)):
    g = torch.Generator().manual_seed(seed)
    h, w = img
    x1 = torch.rand(n, generator=g) * (w - 60)
    y1 = torch.rand(n, generator=g) * (h - 60)
    bw = 4 + torch.rand(n, generator=g) * (w - x1 - 4)
    bh = 4 + torch.rand(n, generator=g) * (h - y1 - 4)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1)


def _iou_to_own_gt(gt, jittered, num_jitter):
    ious = []
    for i in range(gt.shape[0]):
        block = jittered[i * num_jitter : (i + 1) * num_jitter]
        ious.append(pairwise_iou(Boxes(gt[i : i + 1]), Boxes(block))[0])
    return torch.cat(ious)


# ----------------------------------------------------------------------------- jitter
def test_jitter_shape_order_and_displacement_range():
    gt = torch.tensor([[10.0, 20.0, 70.0, 140.0], [0.0, 0.0, 30.0, 12.0]], dtype=torch.float64)
    out = jitter_boxes(gt, num_jitter=5000, generator=torch.Generator().manual_seed(0))
    assert out.shape == (10000, 4) and out.dtype == torch.float64
    for i in range(2):
        block = out[i * 5000 : (i + 1) * 5000]
        w, h = gt[i, 2] - gt[i, 0], gt[i, 3] - gt[i, 1]
        d = (block - gt[i]) / torch.stack([w, h, w, h]) * 6.0  # normalised to [-1, 1]
        assert d.abs().max() <= 1.0 + 1e-9
        # both signs, whole range, roughly uniform: mean ~0, var ~1/3
        assert (d.min(0).values < -0.99).all() and (d.max(0).values > 0.99).all()
        assert d.mean(0).abs().max() < 0.05
        assert ((d.var(0) - 1.0 / 3.0).abs() < 0.03).all()
        # coordinates are independent
        corr = torch.corrcoef(d.T)
        assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 0.06
    assert jitter_boxes(torch.zeros(0, 4)).shape == (0, 4)


def test_jitter_clipped_inside_image():
    h, w = 100, 120
    gt = torch.tensor(
        [[0.0, 0.0, 60.0, 50.0], [60.0, 40.0, 120.0, 100.0], [1.0, 90.0, 119.0, 100.0]]
    )
    g = torch.Generator().manual_seed(1)
    out = jitter_boxes(gt, num_jitter=500, image_size=(h, w), generator=g)
    assert (out[:, 0] >= 0).all() and (out[:, 2] <= w).all()
    assert (out[:, 1] >= 0).all() and (out[:, 3] <= h).all()
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    assert (out[:, 0] == 0).any() and (out[:, 2] == w).any() and (out[:, 3] == h).any()
    unclipped = jitter_boxes(gt, num_jitter=500, generator=torch.Generator().manual_seed(1))
    assert (unclipped[:, 0] < 0).any() and (unclipped[:, 2] > w).any()


def test_jitter_iou_distribution_and_analytic_worst_case():
    # the analytic worst case itself: every side moved inwards by w/6 or h/6
    gt = torch.tensor([[5.0, 7.0, 65.0, 97.0]])
    w, h = 60.0, 90.0
    shrunk = gt + torch.tensor([[w / 6, h / 6, -w / 6, -h / 6]])
    assert abs(float(pairwise_iou(Boxes(gt), Boxes(shrunk))[0, 0]) - WORST_IOU) < 1e-6
    # exhaustive grid over the four normalised displacements in [-1, 1]: the minimum is 4/9,
    # reached at (+1, +1, -1, -1)
    lin = torch.linspace(-1, 1, 21, dtype=torch.float64)
    d = torch.cartesian_prod(lin, lin, lin, lin)
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    grid_iou = pairwise_iou(Boxes(unit), Boxes(unit + d / 6.0))[0]
    assert abs(float(grid_iou.min()) - WORST_IOU) < 1e-6  # Boxes computes in float32
    assert d[grid_iou.argmin()].tolist() == [1.0, 1.0, -1.0, -1.0]

    # empirical distribution of the generator (clipped to the image, GT inside the image)
    num_jitter = 2000
    gt = _random_gt(100, seed=3)
    out = jitter_boxes(
        gt, num_jitter=num_jitter, image_size=(600, 800), generator=torch.Generator().manual_seed(4)
    )
    iou = _iou_to_own_gt(gt, out, num_jitter)
    frac_pos = float((iou > 0.5).float().mean())
    print(
        f"\njitter IoU over {iou.numel()} boxes: min {float(iou.min()):.4f} (bound "
        f"{WORST_IOU:.4f}), "
        f"mean {float(iou.mean()):.4f}, frac > 0.5 {frac_pos:.5f}, "
        f"q01 {float(iou.quantile(0.01)):.4f}, frac > 0.7 {float((iou > 0.7).float().mean()):.4f}"
    )
    assert float(iou.min()) >= WORST_IOU - 1e-5
    assert 0.999 < frac_pos < 1.0  # ~1e-4 of the boxes fall below 0.5 (deterministic seed)
    assert 0.70 < float(iou.mean()) < 0.75


def test_jitter_min_iou_filter():
    gt = _random_gt(30, seed=5)
    for thr in (0.5, 0.8):
        out = jitter_boxes(
            gt,
            num_jitter=200,
            image_size=(600, 800),
            min_iou=thr,
            generator=torch.Generator().manual_seed(6),
        )
        assert out.shape == (6000, 4)
        assert float(_iou_to_own_gt(gt, out, 200).min()) >= thr - 1e-6
    # fallback to the GT box when re-drawing cannot succeed
    out = jitter_boxes(
        gt, num_jitter=3, min_iou=0.999, max_rounds=0, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(out, gt.repeat_interleave(3, dim=0))


def test_jitter_determinism():
    gt = _random_gt(8, seed=9)
    a = jitter_boxes(gt, generator=torch.Generator().manual_seed(42))
    b = jitter_boxes(gt, generator=torch.Generator().manual_seed(42))
    c = jitter_boxes(gt, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8 * 16, 4)


# ----------------------------------------------------------------------------- memory
FS = (2, 3)


def _items(ids, fs=FS):
    """Features whose every entry equals the item id; targets (id, -id, 2id, 0.5)."""
    ids = torch.as_tensor(ids, dtype=torch.float32)
    feats = ids.reshape(-1, *([1] * len(fs))).expand(-1, *fs).clone()
    tgts = torch.stack([ids, -ids, 2 * ids, torch.full_like(ids, 0.5)], dim=1)
    return feats, tgts


def _stored_ids(mem, cls):
    f, t = mem.get_class(cls)
    return f.flatten(1)[:, 0].round().long().tolist()


def test_push_order_and_wraparound():
    mem = FeatureMemory(num_classes=3, queue_size=4, feature_shape=FS)
    for i in range(3):  # one at a time
        mem.push(*_items([i]), torch.tensor([2]))
    assert _stored_ids(mem, 2) == [0, 1, 2]
    assert mem.count.tolist() == [0, 0, 3] and mem.write_ptr.tolist() == [0, 0, 3]
    mem.push(*_items([3, 4, 5]), torch.tensor([2, 2, 2]))  # wraps around
    assert _stored_ids(mem, 2) == [2, 3, 4, 5]
    assert mem.count[2] == 4 and mem.write_ptr[2] == 2
    # slot layout of the ring: 4 and 5 overwrote slots 0 and 1
    assert mem.features[2, :, 0, 0].tolist() == [4.0, 5.0, 2.0, 3.0]
    torch.testing.assert_close(mem.get_class(2)[1], _items([2, 3, 4, 5])[1])


def test_push_more_than_capacity_in_one_call_keeps_newest():
    mem = FeatureMemory(num_classes=3, queue_size=4, feature_shape=FS)
    mem.push(*_items([100]), torch.tensor([0]))
    ids = list(range(10))
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 0, 0])  # class 0: items 0,2,3,5,6,7,8,9
    mem.push(*_items(ids), labels)
    assert _stored_ids(mem, 0) == [6, 7, 8, 9]
    assert _stored_ids(mem, 1) == [1, 4]
    assert _stored_ids(mem, 2) == []
    assert mem.count.tolist() == [4, 2, 0]
    assert mem.write_ptr.tolist() == [(1 + 8) % 4, 2, 0]
    mem.push(*_items([50]), torch.tensor([0]))  # still FIFO afterwards
    assert _stored_ids(mem, 0) == [7, 8, 9, 50]


def test_push_matches_reference_deques():
    """Random batched pushes against one collections.deque(maxlen=M) per class."""
    g = torch.Generator().manual_seed(0)
    C, M = 5, 6
    mem = FeatureMemory(num_classes=C, queue_size=M, feature_shape=FS)
    ref = [collections.deque(maxlen=M) for _ in range(C)]
    next_id = 0
    for _ in range(60):
        n = int(torch.randint(0, 15, (1,), generator=g))
        labels = torch.randint(0, C, (n,), generator=g)
        ids = list(range(next_id, next_id + n))
        next_id += n
        mem.push(*_items(ids), labels)
        for i, c in zip(ids, labels.tolist()):
            ref[c].append(i)
        for c in range(C):
            assert _stored_ids(mem, c) == list(ref[c])
            assert int(mem.count[c]) == len(ref[c])


def test_per_class_isolation_and_validation():
    mem = FeatureMemory(num_classes=4, queue_size=3, feature_shape=FS)
    mem.push(*_items([1, 2]), torch.tensor([0, 0]))
    before = mem.features[0].clone()
    mem.push(*_items(list(range(10, 30))), torch.full((20,), 3))
    assert torch.equal(mem.features[0], before) and _stored_ids(mem, 0) == [1, 2]
    assert mem.features[1].abs().sum() == 0 and mem.features[2].abs().sum() == 0
    assert mem.available().tolist() == [True, False, False, True]
    with pytest.raises(ValueError):
        mem.push(*_items([1]), torch.tensor([4]))  # background / out of range
    with pytest.raises(ValueError):
        mem.push(torch.zeros(1, 5), torch.zeros(1, 4), torch.tensor([0]))  # wrong feature shape


def test_fp16_storage_halves_footprint_and_round_trips():
    shape = (256, 7, 7)
    m32 = FeatureMemory(num_classes=3, queue_size=5, feature_shape=shape, dtype=torch.float32)
    m16 = FeatureMemory(num_classes=3, queue_size=5, feature_shape=shape, dtype="float16")
    mbf = FeatureMemory(num_classes=3, queue_size=5, feature_shape=shape, dtype=torch.bfloat16)
    assert m16.features.dtype == torch.float16 and m16.targets.dtype == torch.float32
    small = m32.nbytes() - m32.features.numel() * 4  # targets + pointers
    assert m16.nbytes() - small == (m32.nbytes() - small) // 2
    assert mbf.nbytes() == m16.nbytes()
    for mem in (m32, m16, mbf):
        assert mem.nbytes() == FeatureMemory.estimate_nbytes(3, 5, shape, mem.dtype)
    feats = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0)) * 5
    tgts = torch.randn(4, 4)
    labels = torch.tensor([0, 1, 1, 2])
    m16.push(feats, tgts, labels)
    f, t, lab = m16.sample(torch.tensor([1]), 2, generator=torch.Generator().manual_seed(0))
    assert f.dtype == torch.float32 and t.dtype == torch.float32
    ref = feats[1:3]
    ok = [any(torch.allclose(f[j], r, rtol=1e-3, atol=1e-3) for r in ref) for j in range(2)]
    assert all(ok)
    torch.testing.assert_close(m16.get_class(1)[0].float(), ref, rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(m16.get_class(1)[1], tgts[1:3])  # targets exact (fp32)
    assert not torch.equal(m16.get_class(1)[0].float(), ref)  # fp16 really rounds


def test_lvis_footprint_numbers():
    fp32 = FeatureMemory.estimate_nbytes(1203, 80, (256, 7, 7), torch.float32)
    fp16 = FeatureMemory.estimate_nbytes(1203, 80, (256, 7, 7), torch.float16)
    assert 1203 * 80 * 256 * 49 * 4 < fp32 < 1203 * 80 * 256 * 49 * 4 + 2_000_000
    assert abs(fp32 / 1e9 - 4.83) < 0.01  # the reference's ~4.8 GB per process
    assert abs(fp16 / 1e9 - 2.42) < 0.01


def test_sample_returns_only_stored_items():
    mem = FeatureMemory(num_classes=4, queue_size=5, feature_shape=FS)
    labels = torch.tensor([0, 0, 1, 0, 1, 0, 0, 0, 2])
    ids = list(range(1, 10))
    mem.push(*_items(ids), labels)
    stored = {c: set(_stored_ids(mem, c)) for c in range(4)}
    assert stored[0] == {2, 4, 6, 7, 8}  # newest 5 of six pushed (1 dropped)
    g = torch.Generator().manual_seed(0)
    hist = collections.Counter()
    for _ in range(400):
        f, t, lab = mem.sample(
            torch.tensor([0, 1, 3, 0, 2]), 3, generator=g
        )  # class 3 empty: skipped
        assert f.shape == (12, *FS) and t.shape == (12, 4) and lab.shape == (12,)
        assert lab.tolist() == [0] * 3 + [1] * 3 + [0] * 3 + [2] * 3
        fid = f.reshape(12, -1)
        assert (fid == fid[:, :1]).all()  # rows are whole stored items
        got = fid[:, 0].long().tolist()
        for j, (i, c) in enumerate(zip(got, lab.tolist())):
            assert i in stored[c]
            torch.testing.assert_close(t[j], _items([i])[1][0])
        assert len(set(got[0:3])) == 3 and len(set(got[6:9])) == 3  # no replacement when count >= m
        assert set(got[3:6]) == stored[1]  # count 2 < m 3: both stored items, one repeated
        hist.update(got[0:3])
    freq = torch.tensor([hist[i] for i in sorted(stored[0])], dtype=torch.float)
    assert (freq / freq.sum() - 0.2).abs().max() < 0.04  # uniform over the filled slots
    f, t, lab = mem.sample(torch.tensor([3]), 4)
    assert f.shape == (0, *FS) and lab.shape == (0,)


def test_device_and_dtype_arguments_cpu():
    mem = FeatureMemory(num_classes=2, queue_size=3, feature_shape=FS, device="cpu")
    assert all(
        t.device.type == "cpu" for t in (mem.features, mem.targets, mem.count, mem.write_ptr)
    )
    mem.push(*_items([1, 2]), torch.tensor([1, 1]))
    f, t, lab = mem.sample(torch.tensor([1]), 2, device=torch.device("cpu"), dtype=torch.float64)
    assert f.device.type == t.device.type == lab.device.type == "cpu"
    assert f.dtype == torch.float64 and t.dtype == torch.float32 and lab.dtype == torch.long


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run by dev/gpu_check.sh)"
)
@pytest.mark.cuda
def test_device_placement_cuda():
    mem = FeatureMemory(num_classes=2, queue_size=3, feature_shape=FS, device="cpu")
    feats, tgts = _items([1, 2])
    mem.push(feats.cuda(), tgts.cuda(), torch.tensor([1, 1], device="cuda"))
    assert mem.features.device.type == "cpu"
    f, t, lab = mem.sample(torch.tensor([1], device="cuda"), 2, device="cuda")
    assert f.is_cuda and t.is_cuda and lab.is_cuda
    on_gpu = FeatureMemory(num_classes=2, queue_size=3, feature_shape=FS, device="cuda")
    on_gpu.push(feats, tgts, torch.tensor([0, 0]))
    assert on_gpu.features.is_cuda and _stored_ids(on_gpu.to("cpu"), 0) == [1, 2]


def test_state_dict_round_trip():
    mem = FeatureMemory(num_classes=3, queue_size=4, feature_shape=FS, dtype=torch.float16)
    mem.push(*_items(list(range(7))), torch.tensor([0, 1, 0, 0, 0, 0, 2]))
    buf = io.BytesIO()
    torch.save(mem.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)  # weights_only=True by default on torch >= 2.6
    other = FeatureMemory(num_classes=3, queue_size=4, feature_shape=FS, dtype=torch.float16)
    other.load_state_dict(state)
    for c in range(3):
        assert _stored_ids(other, c) == _stored_ids(mem, c)
    assert torch.equal(other.write_ptr, mem.write_ptr) and torch.equal(other.count, mem.count)
    with pytest.raises(ValueError):
        FeatureMemory(num_classes=3, queue_size=5, feature_shape=FS).load_state_dict(state)
    other.reset()
    assert len(other) == 0 and not other.available().any()


# ----------------------------------------------------------------------------- class sampler
def test_sampler_frequencies_follow_inverse_scores():
    scores = torch.tensor([0.5, 0.1, 0.02, 0.3, 0.01, 0.9, 0.05])
    available = torch.tensor([True, True, True, True, False, True, True])
    n = 200_000
    draws = sample_memory_classes(
        scores, k=n, available=available, generator=torch.Generator().manual_seed(0)
    )
    assert draws.shape == (n,) and draws.dtype == torch.long
    counts = torch.bincount(draws, minlength=7).double()
    assert counts[4] == 0  # unavailable class never drawn, despite the lowest score
    p = torch.where(available, 1.0 / scores.double(), torch.zeros(7, dtype=torch.float64))
    p = p / p.sum()
    expected = p * n
    mask = available
    chi2 = float((((counts - expected) ** 2)[mask] / expected[mask]).sum())
    # 5 degrees of freedom: P(chi2 > 25) ~ 1e-4
    assert chi2 < 25.0, chi2
    # wrong weighting (proportional to s, or uniform) is clearly rejected by the same statistic
    for wrong in (scores.double() * mask, mask.double()):
        e = wrong / wrong.sum() * n
        assert float((((counts - e) ** 2)[mask] / e[mask]).sum()) > 1000


def test_sampler_edge_cases():
    scores = torch.tensor([0.2, 0.0, 0.4])  # zero score is clamped, not inf/nan
    none = torch.zeros(3, dtype=torch.bool)
    out = sample_memory_classes(scores, k=8, available=none)
    assert out.shape == (0,) and out.dtype == torch.long
    one = torch.tensor([False, False, True])
    assert sample_memory_classes(scores, k=8, available=one).tolist() == [2] * 8
    d = sample_memory_classes(scores, k=50, generator=torch.Generator().manual_seed(0))
    assert (d == 1).all()  # 1/eps dominates
    s3 = torch.tensor([0.2, 0.3, 0.4])
    a = sample_memory_classes(s3, 8, generator=torch.Generator().manual_seed(5))
    b = sample_memory_classes(s3, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        sample_memory_classes(torch.rand(4), 8, available=torch.ones(3, dtype=torch.bool))


def test_sampler_then_memory_end_to_end():
    mem = FeatureMemory(num_classes=5, queue_size=4, feature_shape=FS)
    mem.push(*_items([1, 2, 3]), torch.tensor([1, 3, 3]))
    scores = torch.tensor([0.01, 0.5, 0.3, 0.2, 0.01, 0.01])  # C + 1, background last
    g = torch.Generator().manual_seed(0)
    classes = sample_memory_classes(scores[:-1], k=8, available=mem.available(), generator=g)
    assert set(classes.tolist()) <= {1, 3}
    f, t, lab = mem.sample(classes, 4, generator=g)
    assert f.shape == (32, *FS) and torch.equal(lab, classes.repeat_interleave(4))
