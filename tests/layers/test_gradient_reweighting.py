"""Logarithmic Gradient Re-weighting (Libra R-CNN journal, Eq. 11-19)."""

import math

import pytest
import torch
import torch.nn.functional as F

import libra_d2.layers.gradient_reweighting as gr
from libra_d2.layers.balanced_l1 import balanced_l1_loss
from libra_d2.layers.gradient_reweighting import (
    LGRCrossEntropyLoss,
    LGRL1Loss,
    lgr_cross_entropy,
    lgr_l1_loss,
    lgr_weight,
)

ALPHA, GAMMA = 0.5, 1.5
B = math.exp(GAMMA / ALPHA) - 1.0


def hand_rho(g, alpha=ALPHA, gamma=GAMMA):
    b = math.exp(gamma / alpha) - 1.0
    if g == 0:
        return alpha * b
    return alpha * math.log1p(b * g) / g if g < 1 else gamma / g


# ---------------------------------------------------------------- lgr_weight


def test_lgr_weight_closed_form():
    gs = [0.0, 1e-9, 1e-7, 5.2e-6, 1e-4, 0.01, 0.3, 0.77, 1.0, 2.0]
    got = lgr_weight(torch.tensor(gs, dtype=torch.float64))
    exp = torch.tensor([hand_rho(g) for g in gs], dtype=torch.float64)
    assert torch.allclose(got, exp, rtol=1e-9)
    assert got[0].item() == pytest.approx(ALPHA * B)
    assert got[8].item() == pytest.approx(GAMMA)  # alpha ln(b + 1) = gamma at g = 1
    for alpha, gamma in [(0.8, 1.0), (0.1, 1.5)]:  # large b = e^15 - 1 exercises the small-g branch
        got = lgr_weight(torch.tensor(gs, dtype=torch.float64), alpha, gamma)
        exp = torch.tensor([hand_rho(g, alpha, gamma) for g in gs], dtype=torch.float64)
        assert torch.allclose(got, exp, rtol=1e-8)


def test_lgr_weight_monotone_continuous_detached():
    g = torch.linspace(0, 1, 100001, dtype=torch.float64)
    rho = lgr_weight(g)
    assert (rho[1:] <= rho[:-1]).all()
    assert (rho[1:] - rho[:-1]).abs().max() < 1e-3  # no jump, e.g. at the small-g switch
    g32 = torch.linspace(0, 1, 1001, requires_grad=True)
    r = lgr_weight(g32)
    assert not r.requires_grad and torch.isfinite(r).all()


# ---------------------------------------------------------------- LGR-L1


@pytest.mark.parametrize("beta", [1.0, 0.11, 0.5, 0.0])
def test_lgr_l1_gradient_equals_balanced_l1_gradient(beta):
    gen = torch.Generator().manual_seed(1)
    x = torch.cat(
        [
            torch.randn(200, generator=gen, dtype=torch.float64) * max(beta, 0.3),
            torch.tensor([0.0, beta * 0.999, -beta * 1.001, 5.0], dtype=torch.float64),
        ]
    )
    t = torch.randn(x.shape, generator=gen, dtype=torch.float64) * 0.1
    a = (x + t).requires_grad_(True)
    lgr_l1_loss(a, t, beta=beta, reduction="sum").backward()
    c = (x + t).requires_grad_(True)
    balanced_l1_loss(c, t, beta=beta, reduction="sum", form="continuous").backward()
    assert torch.allclose(a.grad, c.grad, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("beta", [1.0, 0.11])
def test_lgr_l1_value_and_rho_is_detached(beta):
    xs = [0.0, 0.02, -0.05, 0.5 * beta, -0.9 * beta, 1.3 * beta, -4.0]
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    loss = lgr_l1_loss(x, torch.zeros_like(x), beta=beta)
    # Eq. 14: rho * smooth L1 with rho = G_b / G_s.
    exp_val, exp_grad = [], []
    for v in xs:
        u = abs(v)
        gs = min(u / beta, 1.0)
        rho = hand_rho(gs)
        ls = 0.5 * u * u / beta if u < beta else u - 0.5 * beta
        exp_val.append(rho * ls)
        exp_grad.append(math.copysign(rho * gs, v) if v != 0 else 0.0)
    assert torch.allclose(loss, torch.tensor(exp_val, dtype=torch.float64), rtol=1e-9)
    loss.sum().backward()
    assert torch.allclose(x.grad, torch.tensor(exp_grad, dtype=torch.float64), rtol=1e-9)
    # A version whose rho were NOT detached would have a different gradient inside beta.
    y = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    u = y.abs()
    rho_live = torch.where(
        u > 0,
        ALPHA * torch.log1p(B * torch.clamp(u / beta, max=1)) / torch.clamp(u / beta, 1e-12),
        torch.full_like(u, ALPHA * B),
    )
    ls = torch.where(u < beta, 0.5 * u * u / beta, u - 0.5 * beta)
    (rho_live * ls).sum().backward()
    assert not torch.allclose(x.grad[1:5], y.grad[1:5], rtol=1e-3)


def test_lgr_l1_gradcheck_and_reductions():
    x = torch.tensor(
        [-1.7, -0.4, -0.05, 0.08, 0.3, 0.95, 2.5], dtype=torch.float64, requires_grad=True
    )
    t = torch.zeros_like(x)
    # rho is detached, so LGR-L1's autograd gradient is NOT the derivative of its value (gradcheck
    # would fail by design); it is the derivative of balanced L1, which gradcheck verifies.
    a = torch.autograd.grad(lgr_l1_loss(x, t, beta=0.5, reduction="sum"), x)[0]
    assert torch.autograd.gradcheck(
        lambda z: balanced_l1_loss(z, t, beta=0.5, form="continuous"), (x,)
    )
    b = torch.autograd.grad(
        balanced_l1_loss(x, t, beta=0.5, reduction="sum", form="continuous"), x
    )[0]
    assert torch.allclose(a, b)
    none = lgr_l1_loss(x, t, beta=0.5)
    assert torch.allclose(lgr_l1_loss(x, t, beta=0.5, reduction="mean"), none.mean())
    assert torch.allclose(lgr_l1_loss(x, t, beta=0.5, reduction="sum"), none.sum())
    assert lgr_l1_loss(torch.zeros(0), torch.zeros(0), reduction="mean").item() == 0.0
    with pytest.raises(ValueError):
        lgr_l1_loss(x, t, reduction="bad")
    mod = LGRL1Loss(alpha=0.8, gamma=1.0, beta=0.11, reduction="sum")
    assert torch.allclose(mod(x, t), lgr_l1_loss(x, t, 0.8, 1.0, 0.11, "sum"))


def test_lgr_l1_extremes():
    x = torch.tensor([0.0, 1e-30, 1e6, -1e6, 3e38], requires_grad=True)
    loss = lgr_l1_loss(x, torch.zeros_like(x), beta=0.11)
    loss.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0] == 0


# ---------------------------------------------------------------- LGR-CE


def _example(n=6, k=5, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen, dtype=torch.float64) * scale
    targets = torch.randint(0, k, (n,), generator=gen)
    return logits, targets


def test_lgr_ce_with_weight_forced_to_one_is_cross_entropy(monkeypatch):
    logits, targets = _example()
    monkeypatch.setattr(gr, "lgr_weight", lambda g, alpha=0.5, gamma=1.5: torch.ones_like(g))
    assert torch.allclose(lgr_cross_entropy(logits, targets), F.cross_entropy(logits, targets))
    assert torch.allclose(
        lgr_cross_entropy(logits, targets, reduction="sum"),
        F.cross_entropy(logits, targets, reduction="sum"),
    )
    targets[1] = -1
    assert torch.allclose(
        lgr_cross_entropy(logits, targets), F.cross_entropy(logits, targets, ignore_index=-1)
    )


def test_lgr_ce_value_by_hand():
    logits, targets = _example()
    p = torch.softmax(logits, 1)
    total = 0.0
    per = []
    for i in range(logits.shape[0]):
        pt = p[i, targets[i]].item()
        rho = hand_rho(abs(pt - 1.0))  # Eq. 18
        per.append(-rho * math.log(pt))  # Eq. 19
        total += per[-1]
    assert torch.allclose(
        lgr_cross_entropy(logits, targets, reduction="none"), torch.tensor(per, dtype=torch.float64)
    )
    assert lgr_cross_entropy(logits, targets).item() == pytest.approx(
        total / logits.shape[0], rel=1e-10
    )
    assert lgr_cross_entropy(logits, targets, reduction="sum").item() == pytest.approx(
        total, rel=1e-10
    )


def test_lgr_ce_gradient_is_scaled_by_detached_rho():
    logits, targets = _example(n=8, k=4, seed=3)
    n = logits.shape[0]
    z = logits.clone().requires_grad_(True)
    lgr_cross_entropy(z, targets).backward()
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(targets, 4).double()
    pt = p[torch.arange(n), targets]
    rho = torch.tensor([hand_rho(1 - v) for v in pt.tolist()], dtype=torch.float64)
    assert torch.allclose(z.grad, rho[:, None] * (p - onehot) / n, rtol=1e-8)
    # On the true-class logit the magnitude is the logarithmic mapping alpha ln(b |p_t - 1| + 1)
    # (Eq. 18).
    g_true = z.grad[torch.arange(n), targets] * n
    assert torch.allclose(g_true.abs(), ALPHA * torch.log(B * (1 - pt) + 1), rtol=1e-8)
    # Plain CE gradient for comparison: differs unless rho == 1.
    z2 = logits.clone().requires_grad_(True)
    F.cross_entropy(z2, targets).backward()
    assert not torch.allclose(z.grad, z2.grad)


def test_lgr_ce_upweights_well_classified_samples():
    logits = torch.tensor([[6.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-6.0, 0.0, 0.0]])
    targets = torch.zeros(3, dtype=torch.long)
    ratio = lgr_cross_entropy(logits, targets, reduction="none") / F.cross_entropy(
        logits, targets, reduction="none"
    )
    assert ratio[0] > ratio[1] > ratio[2] >= GAMMA - 1e-4  # opposite of focal loss
    assert ratio[0] < ALPHA * B


def test_lgr_ce_extreme_logits_are_finite():
    logits = torch.tensor(
        [[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0], [100.0, 100.0, -100.0]], requires_grad=True
    )
    targets = torch.tensor([0, 0, 2])
    loss = lgr_cross_entropy(logits, targets, reduction="none")
    assert torch.isfinite(loss).all()
    assert loss[0].item() == 0.0  # p_t = 1: rho -> alpha b, CE = 0
    assert loss[1].item() == pytest.approx(GAMMA * 200.0, rel=1e-5)  # p_t = 0: rho = gamma
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # p_t -> 1 in float32: rho must approach alpha * b without 0/0
    assert lgr_weight(torch.tensor([0.0, 1e-8, 6e-8])).allclose(
        torch.full((3,), ALPHA * B), rtol=1e-5
    )


def test_lgr_ce_empty_ignore_and_module():
    empty = torch.zeros(0, 4, requires_grad=True)
    out = lgr_cross_entropy(empty, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0 and out.requires_grad
    logits, targets = _example(n=5, k=4, seed=7)
    targets = torch.tensor([0, -1, 3, -1, 2])
    none = lgr_cross_entropy(logits, targets, reduction="none")
    assert none[1] == 0 and none[3] == 0
    assert torch.allclose(lgr_cross_entropy(logits, targets), none.sum() / 3)
    allign = torch.full((5,), -1)
    assert lgr_cross_entropy(logits, allign).item() == 0.0
    with pytest.raises(ValueError):
        lgr_cross_entropy(logits, targets, reduction="batch")
    mod = LGRCrossEntropyLoss(alpha=0.8, gamma=1.0)
    assert torch.allclose(mod(logits, targets), lgr_cross_entropy(logits, targets, 0.8, 1.0))
