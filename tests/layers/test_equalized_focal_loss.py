"""Tests for libra_d2.layers.equalized_focal_loss (sigmoid EFL, its analytic gradient,
statistics)."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss

from libra_d2.layers.equalized_focal_loss import (
    EqualizedFocalLoss,
    accumulate_gradient_statistics,
    efl_focusing_factors,
    efl_logit_grad,
    equalized_focal_loss,
)


def _batch(num_anchors, num_classes, dtype=torch.float32, seed=0, spread=4.0, bg_fraction=0.6):
    gen = torch.Generator().manual_seed(seed)
    logits = (
        torch.randn(num_anchors, num_classes, generator=gen, dtype=torch.float64) * spread
    ).to(dtype)
    labels = torch.randint(0, num_classes, (num_anchors,), generator=gen)
    labels[torch.rand(num_anchors, generator=gen) < bg_fraction] = num_classes  # background
    targets = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(dtype)
    return logits, targets


# --------------------------------------------------------------------------------------------------
# factors and loss values
# --------------------------------------------------------------------------------------------------
def test_focusing_factors_by_hand():
    g = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.5, -0.5])
    gamma, weight = efl_focusing_factors(g, gamma_b=2.0, scale=8.0)
    # gamma_j = 2 + 8 (1 - clamp(g, 0, 1)); weight = gamma_j / 2
    assert torch.allclose(gamma, torch.tensor([10.0, 8.0, 6.0, 2.0, 2.0, 10.0]))
    assert torch.allclose(weight, torch.tensor([5.0, 4.0, 3.0, 1.0, 1.0, 5.0]))
    gamma, weight = efl_focusing_factors(torch.tensor([0.5, 0.0]), gamma_b=1.0, scale=4.0)
    assert torch.allclose(gamma, torch.tensor([3.0, 5.0]))
    assert torch.allclose(weight, torch.tensor([3.0, 5.0]))
    # constants: no gradient flows into them
    g = torch.tensor([0.2, 0.7], requires_grad=True)
    gamma, weight = efl_focusing_factors(g)
    assert not gamma.requires_grad and not weight.requires_grad


def test_loss_values_by_hand():
    # one anchor, three classes: per element alpha_t * w * (1 - p_t)^gamma * (-log p_t)
    logits = torch.tensor([[0.0, 0.0, math.log(3.0)]], dtype=torch.float64)  # p = 0.5, 0.5, 0.75
    targets = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    gamma = torch.tensor([2.0, 10.0, 6.0], dtype=torch.float64)
    weight = torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64)
    expected = [
        0.25 * 1.0 * 0.5**2 * math.log(2.0),  # y=1, p_t = 0.5
        0.75 * 5.0 * 0.5**10 * math.log(2.0),  # y=0, p_t = 0.5
        0.25 * 3.0 * 0.25**6 * -math.log(0.75),  # y=1, p_t = 0.75
    ]
    per_element = equalized_focal_loss(logits, targets, gamma, weight, alpha=0.25, reduction="none")
    assert torch.allclose(
        per_element[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0
    )
    total = equalized_focal_loss(logits, targets, gamma, weight, alpha=0.25)
    assert total.item() == pytest.approx(sum(expected), rel=1e-12)

    module = EqualizedFocalLoss(3).double()
    loss = module(
        logits.clone().requires_grad_(), targets
    )  # fresh statistics: gamma = 2, weight = 1
    focal = (
        0.25 * 0.5**2 * math.log(2) + 0.75 * 0.5**2 * math.log(2) + 0.25 * 0.25**2 * -math.log(0.75)
    )
    assert loss.item() == pytest.approx(focal, rel=1e-12)


def test_equals_fvcore_focal_loss_at_scale_zero():
    logits, targets = _batch(300, 7, seed=1, spread=6.0)
    logits[0, :3] = torch.tensor([30.0, -30.0, 15.0])
    g = torch.rand(7, generator=torch.Generator().manual_seed(2))
    gamma, weight = efl_focusing_factors(g, gamma_b=2.0, scale=0.0)
    assert torch.all(gamma == 2.0) and torch.all(weight == 1.0)

    x_ref = logits.clone().requires_grad_()
    ref = sigmoid_focal_loss(x_ref, targets, alpha=0.25, gamma=2, reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref, x_ref)

    x = logits.clone().requires_grad_()
    loss = equalized_focal_loss(x, targets, gamma, weight, alpha=0.25, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.allclose(loss, ref, rtol=1e-6, atol=0)
    assert torch.allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
    none = equalized_focal_loss(logits, targets, gamma, weight, reduction="none")
    ref_none = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2, reduction="none")
    assert torch.allclose(none, ref_none, rtol=1e-5, atol=1e-8)

    # analytic gradient and the fused module path, with statistics that would give g < 1
    assert torch.allclose(
        efl_logit_grad(logits, targets, gamma, weight), ref_grad, rtol=1e-5, atol=1e-7
    )
    module = EqualizedFocalLoss(7, gamma_b=2.0, scale=0.0).train()
    module.statistics.update(torch.rand(7) * 0.1, torch.ones(7))
    x_mod = logits.clone().requires_grad_()
    mod_loss = module(x_mod, targets, normalizer=1.0)
    mod_loss.backward()
    assert torch.allclose(mod_loss, ref, rtol=1e-6, atol=0)
    assert torch.allclose(x_mod.grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_scale_changes_loss_only_for_unbalanced_classes():
    logits, targets = _batch(50, 3, seed=3)
    g = torch.tensor([1.0, 0.5, 0.0])
    gamma, weight = efl_focusing_factors(g)
    per = equalized_focal_loss(logits, targets, gamma, weight, reduction="none")
    focal = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2, reduction="none")
    assert torch.allclose(per[:, 0], focal[:, 0], rtol=1e-5, atol=1e-8)  # g = 1: plain focal loss
    assert not torch.allclose(per[:, 1:], focal[:, 1:], rtol=1e-3)


# --------------------------------------------------------------------------------------------------
# analytic gradient
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.25, 0.6, -1.0, 0.0])
def test_analytic_gradient_equals_autograd_float64(alpha):
    logits, targets = _batch(40, 5, dtype=torch.float64, seed=4, spread=5.0, bg_fraction=0.3)
    logits = logits.reshape(4, 10, 5)
    targets = targets.reshape(4, 10, 5)
    g = torch.tensor(
        [0.0, 0.125, 0.5, 0.875, 1.0], dtype=torch.float64
    )  # gamma_j 10, 9, 6, 3, 2 (fp32-exact)
    gamma, weight = efl_focusing_factors(g)
    x = logits.clone().requires_grad_()
    loss = equalized_focal_loss(x, targets, gamma, weight, alpha=alpha)
    (expected,) = torch.autograd.grad(loss, x)
    analytic = efl_logit_grad(logits, targets, gamma, weight, alpha=alpha)
    assert analytic.dtype == torch.float64 and analytic.shape == logits.shape
    assert torch.allclose(analytic, expected, rtol=1e-10, atol=1e-14)
    # sign: positives pull the logit up (negative gradient), negatives push it down
    assert torch.all(analytic[targets > 0] <= 0) and torch.all(analytic[targets == 0] >= 0)

    # fused module path: backward and statistics are the same gradient, scaled by 1 / normalizer
    module = EqualizedFocalLoss(5).double().train()
    module.statistics.pos_grad.copy_(g.float())
    module.statistics.neg_grad.fill_(1.0)
    module.alpha = alpha
    before = module.statistics.pos_grad.clone(), module.statistics.neg_grad.clone()
    x2 = logits.clone().requires_grad_()
    loss2 = module(x2, targets, normalizer=4.0)
    loss2.backward()
    assert loss2.item() == pytest.approx(loss.item() / 4.0, rel=1e-10)
    assert torch.allclose(x2.grad, expected / 4.0, rtol=1e-10, atol=1e-14)
    pos, neg = accumulate_gradient_statistics(expected / 4.0, targets)
    assert torch.allclose(module.statistics.pos_grad - before[0], pos.float(), rtol=1e-5, atol=1e-7)
    assert torch.allclose(module.statistics.neg_grad - before[1], neg.float(), rtol=1e-5, atol=1e-7)


def test_gradient_and_statistics_in_detectron2_retinanet_layout():
    """2 anchors x 3 classes per location: the head emits (N, A*K, H, W) with channel = a*K + k;
    Detectron2 permutes to (N, H*W*A, K). Statistics must follow that layout, not (class, anchor).
    """
    from detectron2.modeling.meta_arch.retinanet import permute_to_N_HWA_K

    num_anchors, num_classes, n, h, w = 2, 3, 2, 2, 3
    gen = torch.Generator().manual_seed(5)
    raw = torch.randn(n, num_anchors * num_classes, h, w, generator=gen, dtype=torch.float64) * 3
    raw.requires_grad_()
    logits = permute_to_N_HWA_K(raw, num_classes)  # (N, HWA, K)
    assert logits.shape == (n, h * w * num_anchors, num_classes)
    labels = torch.randint(0, num_classes + 1, logits.shape[:2], generator=gen)
    labels[0, 0], labels[0, 1], labels[1, 2] = 0, 1, 2  # every class has a positive
    targets = F.one_hot(labels, num_classes + 1)[..., :num_classes].double()
    gamma, weight = efl_focusing_factors(
        torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    )  # 10, 6, 2

    loss = equalized_focal_loss(logits, targets, gamma, weight)
    (grad_raw,) = torch.autograd.grad(loss, raw)
    analytic = efl_logit_grad(logits.detach(), targets, gamma, weight)
    assert torch.allclose(
        permute_to_N_HWA_K(grad_raw, num_classes), analytic, rtol=1e-10, atol=1e-14
    )

    pos, neg = accumulate_gradient_statistics(analytic, targets)
    # the same sums straight from the head's gradient, channel = a*K + k -> (N, A, K, H, W)
    targets_raw = targets.reshape(n, h, w, num_anchors, num_classes).permute(0, 3, 4, 1, 2)
    g5 = grad_raw.abs().reshape(n, num_anchors, num_classes, h, w)
    pos_raw = (g5 * targets_raw).sum(dim=(0, 1, 3, 4))
    neg_raw = (g5 * (1 - targets_raw)).sum(dim=(0, 1, 3, 4))
    assert torch.allclose(pos, pos_raw, rtol=1e-10) and torch.allclose(neg, neg_raw, rtol=1e-10)
    # the reference's pitfall, reading the channels as (class, anchor), gives different statistics
    wrong = grad_raw.abs().reshape(n, num_classes, num_anchors, h, w).transpose(1, 2)
    wrong_pos = (wrong * targets_raw).sum(dim=(0, 1, 3, 4))
    assert not torch.allclose(wrong_pos, pos, rtol=1e-3)

    # the module, fed the Detectron2 layout with a valid mask, collects the same statistics
    valid = torch.ones(logits.shape[:2], dtype=torch.bool)
    valid[1, 0] = False
    module = EqualizedFocalLoss(num_classes).double().train()
    module.statistics.pos_grad.copy_(torch.tensor([0.0, 0.5, 1.0]))  # g = (0, 0.5, 1) as above
    module.statistics.neg_grad.fill_(1.0)
    x = logits.detach().clone().requires_grad_()
    module(x, targets, normalizer=1.0, valid_mask=valid).backward()
    expected_pos, expected_neg = accumulate_gradient_statistics(analytic, targets, valid)
    pos_delta = module.statistics.pos_grad - torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(pos_delta, expected_pos.float(), rtol=1e-5)
    assert torch.allclose(module.statistics.neg_grad - 1.0, expected_neg.float(), rtol=1e-5)
    assert torch.all(x.grad[1, 0] == 0)


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------
def test_accumulate_gradient_statistics_by_hand():
    grad = torch.tensor([[-0.5, 0.2, 0.1], [0.3, -0.4, 0.0], [9.0, 9.0, -9.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pos, neg = accumulate_gradient_statistics(grad, targets, torch.tensor([True, True, False]))
    assert torch.allclose(pos, torch.tensor([0.5, 0.4, 0.0]))
    assert torch.allclose(neg, torch.tensor([0.3, 0.2, 0.1]))
    pos, neg = accumulate_gradient_statistics(grad, targets)
    assert torch.allclose(pos, torch.tensor([0.5, 0.4, 9.0]))
    assert torch.allclose(neg, torch.tensor([9.3, 9.2, 0.1]))


def test_module_updates_statistics_then_uses_them():
    assert not (dist.is_available() and dist.is_initialized())  # single process, no process group
    logits, targets = _batch(200, 4, seed=6, spread=3.0, bg_fraction=0.8)
    module = EqualizedFocalLoss(4).train()
    assert torch.all(module.statistics.ratio == 1.0)  # starts as focal loss
    x = logits.clone().requires_grad_()
    loss = module(x, targets, normalizer=7.0)
    (grad,) = torch.autograd.grad(loss, x)
    pos, neg = accumulate_gradient_statistics(grad, targets)
    assert torch.allclose(module.statistics.pos_grad, pos, rtol=1e-5)
    assert torch.allclose(module.statistics.neg_grad, neg, rtol=1e-5)
    g = (pos / neg).clamp(0, 1)
    assert torch.allclose(module.statistics.ratio, g, rtol=1e-5)
    assert torch.all(g < 1)  # negatives dominate, so the next step focuses more
    gamma, weight = module.focusing_factors()
    assert torch.all(gamma > 2.0) and torch.allclose(weight, gamma / 2.0)
    x = logits.clone().requires_grad_()
    next_loss = module(x, targets, normalizer=7.0)
    expected = equalized_focal_loss(logits, targets, gamma, weight) / 7.0
    assert torch.allclose(next_loss, expected, rtol=1e-5)
    (next_grad,) = torch.autograd.grad(next_loss, x)
    pos2, neg2 = accumulate_gradient_statistics(next_grad, targets)
    assert torch.allclose(module.statistics.pos_grad, pos + pos2, rtol=1e-5)  # running sums
    assert torch.allclose(module.statistics.neg_grad, neg + neg2, rtol=1e-5)

    # tensor normaliser, and no update in eval mode or without grad
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.eval()
    module(logits.clone().requires_grad_(), targets, normalizer=torch.tensor(7.0)).backward()
    module.train()
    with torch.no_grad():
        no_grad_loss = module(logits, targets, normalizer=torch.tensor(7.0))
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert no_grad_loss.item() == pytest.approx(
        (equalized_focal_loss(logits, targets, *module.focusing_factors()) / 7.0).item(), rel=1e-5
    )
    assert set(module.state_dict()) == {"statistics.pos_grad", "statistics.neg_grad"}


def test_statistics_are_fp32_under_autocast():
    logits, targets = _batch(64, 3, seed=7)
    module = EqualizedFocalLoss(3).train()
    x = logits.to(torch.bfloat16).requires_grad_()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = module(x, targets.to(torch.bfloat16), normalizer=3.0)
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()
    assert module.statistics.pos_grad.dtype == torch.float32
    assert module.statistics.neg_grad.dtype == torch.float32
    expected = efl_logit_grad(x.detach(), targets, *efl_focusing_factors(torch.ones(3))) / 3.0
    pos, neg = accumulate_gradient_statistics(expected, targets)
    assert torch.allclose(module.statistics.pos_grad, pos, rtol=1e-5)
    assert torch.allclose(module.statistics.neg_grad, neg, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_at_extreme_logits(dtype):
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0, 1e4, -1e4]], dtype=dtype)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 1.0]], dtype=dtype)
    gamma, weight = efl_focusing_factors(torch.tensor([0.0, 0.3, 1.0, 0.0, 0.5, 0.0]))
    x = logits.clone().requires_grad_()
    per = equalized_focal_loss(x, targets, gamma, weight, reduction="none")
    (grad,) = torch.autograd.grad(per.sum(), x)
    analytic = efl_logit_grad(logits, targets, gamma, weight)
    assert (
        torch.isfinite(per).all() and torch.isfinite(grad).all() and torch.isfinite(analytic).all()
    )
    assert torch.allclose(analytic, grad, rtol=1e-5, atol=1e-30)
    # easy entries: ~0 loss, ~0 gradient; confidently wrong entries: alpha_t w * |x| and gradient
    # magnitude alpha_t w (q -> 1, p_t -> 0)
    w = weight.to(dtype)
    assert per[0, 0].item() == pytest.approx(0.0, abs=1e-30)
    assert per[0, 1].item() == pytest.approx(0.25 * w[1].item() * 100.0, rel=1e-6)
    assert per[0, 2].item() == pytest.approx(0.75 * w[2].item() * 100.0, rel=1e-6)
    assert per[0, 3].item() == pytest.approx(0.0, abs=1e-30)
    assert per[0, 4].item() == pytest.approx(0.75 * w[4].item() * 1e4, rel=1e-6)
    assert per[0, 5].item() == pytest.approx(0.25 * w[5].item() * 1e4, rel=1e-6)
    assert analytic[0, 1].item() == pytest.approx(-0.25 * w[1].item(), rel=1e-6)
    assert analytic[0, 2].item() == pytest.approx(0.75 * w[2].item(), rel=1e-6)
    assert analytic[0, 0].item() == 0.0 and analytic[0, 3].item() == 0.0

    module = EqualizedFocalLoss(6).train()
    x2 = logits.clone().requires_grad_()
    loss = module(x2, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x2.grad).all()
    assert (
        torch.isfinite(module.statistics.pos_grad).all()
        and torch.isfinite(module.statistics.neg_grad).all()
    )

    # the pitfall this guards against: -log(sigmoid(x)) overflows to inf in fp32
    if dtype == torch.float32:
        assert torch.isinf(-torch.log(torch.sigmoid(torch.tensor(-200.0))))


def test_input_validation():
    module = EqualizedFocalLoss(3)
    with pytest.raises(ValueError):
        module(torch.zeros(4, 5), torch.zeros(4, 5))
    with pytest.raises(ValueError):
        equalized_focal_loss(torch.zeros(4, 3), torch.zeros(4, 2), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError):
        efl_logit_grad(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(2), torch.ones(3))
