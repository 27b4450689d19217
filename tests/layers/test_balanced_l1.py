"""Balanced L1 loss against the closed forms of Libra R-CNN (journal), Eq. 8-10: the
"continuous" form (the integral of Eq. 8 for any beta) and the reference's form (the default)."""

import math

import pytest
import torch

from libra_d2.layers import balanced_l1 as bl1
from libra_d2.layers.balanced_l1 import BalancedL1Loss, balanced_l1_b


def balanced_l1_loss(*args, form="continuous", **kwargs):
    """The tests below derive the continuous form; the reference form has its own tests."""
    return bl1.balanced_l1_loss(*args, form=form, **kwargs)


ALPHA, GAMMA = 0.5, 1.5
B = math.exp(GAMMA / ALPHA) - 1.0  # Eq. 10


def intended_grad(u, alpha=ALPHA, gamma=GAMMA, beta=1.0):
    """dL/d|x| of Eq. 8 (with transition point beta), written independently of the module."""
    b = math.exp(gamma / alpha) - 1.0
    return alpha * math.log(b * u / beta + 1.0) if u < beta else gamma


def reference_loss(x, alpha=ALPHA, gamma=GAMMA, beta=1.0):
    """The public reference formula, as given in REFERENCE_NOTES.md (correct only at beta = 1)."""
    b = math.exp(gamma / alpha) - 1.0
    d = torch.abs(x)
    return torch.where(
        d < beta,
        alpha / b * (b * d + 1) * torch.log(b * d / beta + 1) - alpha * d,
        gamma * d + gamma / b - alpha * beta,
    )


def grad_of(x, **kw):
    x = x.clone().detach().requires_grad_(True)
    balanced_l1_loss(x, torch.zeros_like(x), **kw).sum().backward()
    return x.grad


def test_b_satisfies_eq10():
    assert balanced_l1_b(0.5, 1.5) == pytest.approx(19.0855, abs=1e-4)
    for alpha, gamma in [(0.5, 1.5), (0.5, 1.0), (0.8, 1.0), (1.0, 1.0), (0.3, 2.0)]:
        b = balanced_l1_b(alpha, gamma)
        assert alpha * math.log(b + 1) == pytest.approx(gamma, rel=1e-12)
    with pytest.raises(ValueError):
        balanced_l1_b(0.0, 1.5)
    with pytest.raises(ValueError):
        balanced_l1_b(0.5, -1.0)


@pytest.mark.parametrize(
    "x,beta,expected",
    [
        # inside: (alpha/b)(b u + beta) ln(b u / beta + 1) - alpha u
        (0.3, 1.0, ALPHA / B * (B * 0.3 + 1.0) * math.log(B * 0.3 + 1.0) - ALPHA * 0.3),
        (
            -0.05,
            0.11,
            ALPHA / B * (B * 0.05 + 0.11) * math.log(B * 0.05 / 0.11 + 1.0) - ALPHA * 0.05,
        ),
        (0.2, 0.5, ALPHA / B * (B * 0.2 + 0.5) * math.log(B * 0.2 / 0.5 + 1.0) - ALPHA * 0.2),
        # outside: gamma u + gamma beta / b - alpha beta
        (2.0, 1.0, GAMMA * 2.0 + GAMMA / B - ALPHA),
        (-0.7, 0.11, GAMMA * 0.7 + GAMMA * 0.11 / B - ALPHA * 0.11),
        (3.0, 0.5, GAMMA * 3.0 + GAMMA * 0.5 / B - ALPHA * 0.5),
        (0.0, 0.5, 0.0),
    ],
)
def test_closed_form_values(x, beta, expected):
    got = balanced_l1_loss(
        torch.tensor([x], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), beta=beta
    )
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_target_is_subtracted():
    inp = torch.tensor([1.3, -0.2, 5.0], dtype=torch.float64)
    tgt = torch.tensor([1.0, 0.4, -1.0], dtype=torch.float64)
    assert torch.allclose(
        balanced_l1_loss(inp, tgt), balanced_l1_loss(inp - tgt, torch.zeros(3, dtype=torch.float64))
    )
    assert not torch.allclose(
        balanced_l1_loss(inp, tgt), balanced_l1_loss(inp, torch.zeros(3, dtype=torch.float64))
    )


def test_equals_reference_at_beta_1():
    x = torch.linspace(-4, 4, 4001, dtype=torch.float64)
    ours = balanced_l1_loss(x, torch.zeros_like(x), beta=1.0)
    assert torch.allclose(ours, reference_loss(x, beta=1.0), rtol=1e-12, atol=1e-12)
    for alpha, gamma in [(0.8, 1.0), (1.0, 1.0)]:
        ours = balanced_l1_loss(x, torch.zeros_like(x), alpha=alpha, gamma=gamma, beta=1.0)
        assert torch.allclose(ours, reference_loss(x, alpha, gamma, 1.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [0.11, 0.5])
def test_differs_from_reference_when_beta_not_1(beta):
    # Documented difference: inside alpha (1 - beta) / b ln(b u / beta + 1), outside gamma (1 -
    # beta) / b.
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    u = x.abs()
    diff = reference_loss(x, beta=beta) - balanced_l1_loss(x, torch.zeros_like(x), beta=beta)
    expected = torch.where(
        u < beta,
        ALPHA * (1 - beta) / B * torch.log(B * u / beta + 1),
        torch.full_like(u, GAMMA * (1 - beta) / B),
    )
    assert torch.allclose(diff, expected, atol=1e-12)
    assert diff.abs().max() > 1e-3
    # The reference gradient jumps at beta; ours does not.
    eps = 1e-7
    pts = torch.tensor(
        [beta * (1 - eps), beta * (1 + eps)], dtype=torch.float64, requires_grad=True
    )
    reference_loss(pts, beta=beta).sum().backward()
    jump = ALPHA * ((B * beta + 1) / (beta * (B + 1)) - 1)  # 0.025 at beta 0.5, 0.20 at beta 0.11
    assert (pts.grad[0] - pts.grad[1]).item() == pytest.approx(jump, rel=1e-4)
    assert jump > 0.02
    g = grad_of(pts.detach(), beta=beta)
    assert abs(g[0] - g[1]) < 1e-5


@pytest.mark.parametrize("beta", [1.0, 0.11, 0.5])
def test_continuity_of_value_and_gradient_at_beta(beta):
    for eps in (1e-6, 1e-9):
        pts = torch.tensor([beta * (1 - eps), beta, beta * (1 + eps)], dtype=torch.float64)
        for sign in (1.0, -1.0):
            v = balanced_l1_loss(sign * pts, torch.zeros(3, dtype=torch.float64), beta=beta)
            assert abs(v[0] - v[1]) < 2 * GAMMA * beta * eps + 1e-12
            assert abs(v[2] - v[1]) < 2 * GAMMA * beta * eps + 1e-12
            g = grad_of(sign * pts, beta=beta)
            assert torch.allclose(g, torch.full_like(g, sign * GAMMA), atol=1e-5)


@pytest.mark.parametrize("beta", [1.0, 0.11, 0.5])
def test_autograd_gradient_equals_eq8(beta):
    xs = [
        -5.0,
        -1.2 * beta,
        -0.99 * beta,
        -0.5 * beta,
        -0.01 * beta,
        0.0,
        1e-4 * beta,
        0.3 * beta,
        0.999 * beta,
        1.001 * beta,
        2.0,
        100.0,
    ]
    x = torch.tensor(xs, dtype=torch.float64)
    g = grad_of(x, beta=beta)
    expected = torch.tensor(
        [math.copysign(intended_grad(abs(v), beta=beta), v) if v != 0 else 0.0 for v in xs],
        dtype=torch.float64,
    )
    assert torch.allclose(g, expected, rtol=1e-10, atol=1e-12)
    assert g[5] == 0.0 and torch.isfinite(g).all()


@pytest.mark.parametrize("beta", [1.0, 0.11, 0.5])
def test_equals_numeric_integral_of_gradient(beta):
    grid = torch.linspace(0, 3.0, 300001, dtype=torch.float64)
    b = math.exp(GAMMA / ALPHA) - 1.0
    g = torch.where(
        grid < beta, ALPHA * torch.log(b * grid / beta + 1), torch.full_like(grid, GAMMA)
    )
    for u in [0.25 * beta, 0.5 * beta, 0.9 * beta, beta, 1.5 * beta, 2.9]:
        n = int(round(u / 3.0 * 300000)) + 1
        numeric = torch.trapezoid(g[:n], grid[:n]).item()
        u_grid = grid[n - 1].item()
        closed = balanced_l1_loss(
            torch.tensor([u_grid], dtype=torch.float64),
            torch.zeros(1, dtype=torch.float64),
            beta=beta,
        ).item()
        assert closed == pytest.approx(numeric, abs=1e-7), (u, closed, numeric)


@pytest.mark.parametrize("beta", [1.0, 0.11, 0.5])
def test_gradcheck(beta):
    # Points away from 0 and +-beta (kinks of the second derivative).
    x = torch.tensor(
        [-2.0, -0.7 * beta, -0.2 * beta, 0.13 * beta, 0.6 * beta, 1.7 * beta, 4.0],
        dtype=torch.float64,
    )
    x.requires_grad_(True)
    t = torch.zeros_like(x)
    assert torch.autograd.gradcheck(lambda a: balanced_l1_loss(a, t, beta=beta), (x,))
    # and with respect to the target
    x2 = x.detach().clone()
    t2 = torch.tensor([0.1] * 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda tt: balanced_l1_loss(x2 + 0.1, tt, beta=beta, reduction="sum"), (t2,)
    )


@pytest.mark.parametrize("beta", [0.0, 1e-7])
def test_small_beta_is_scaled_l1(beta):
    x = torch.tensor([-3.0, -0.01, 0.0, 1e-8, 0.5, 7.0], requires_grad=True)
    loss = balanced_l1_loss(x, torch.zeros(6), beta=beta)
    assert torch.allclose(loss, GAMMA * x.detach().abs())
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(x.grad, GAMMA * torch.sign(x.detach()))


def test_no_nan_at_zero_and_extremes():
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([0.0, -0.0, 1e-30, 1e6, -1e6, 1e30], dtype=dtype, requires_grad=True)
        loss = balanced_l1_loss(x, torch.zeros_like(x), beta=0.11)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()
        assert loss[0] == 0 and x.grad[0] == 0


def test_reductions_and_module():
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)) * 2
    t = torch.zeros(4, 5)
    none = balanced_l1_loss(x, t, beta=0.5)
    assert none.shape == (4, 5)
    assert torch.allclose(balanced_l1_loss(x, t, beta=0.5, reduction="sum"), none.sum())
    assert torch.allclose(balanced_l1_loss(x, t, beta=0.5, reduction="mean"), none.mean())
    empty = torch.zeros(0, 4, requires_grad=True)
    out = balanced_l1_loss(empty, torch.zeros(0, 4), reduction="mean")
    assert out.item() == 0.0 and out.requires_grad
    with pytest.raises(ValueError):
        balanced_l1_loss(x, t, reduction="avg")
    with pytest.raises(ValueError):
        balanced_l1_loss(x, t, beta=-1.0)
    mod = BalancedL1Loss(alpha=0.8, gamma=1.0, beta=0.11, reduction="sum", form="continuous")
    assert torch.allclose(mod(x, t), balanced_l1_loss(x, t, 0.8, 1.0, 0.11, "sum"))


# ------------------------------------------------------------------------------ reference form
@pytest.mark.parametrize("beta", [1.0, 0.11, 0.5])
def test_reference_form_is_the_default_and_equals_the_reference_formula(beta):
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    got = bl1.balanced_l1_loss(x, torch.zeros_like(x), beta=beta)
    assert torch.allclose(got, reference_loss(x, beta=beta), rtol=1e-12, atol=1e-12)
    module = BalancedL1Loss(beta=beta)
    assert module.form == "reference" and torch.equal(module(x, torch.zeros_like(x)), got)
    if beta == 1.0:  # the two forms are one loss at beta 1
        assert torch.allclose(got, balanced_l1_loss(x, torch.zeros_like(x), beta=1.0), atol=1e-12)


def test_reference_form_gradient_at_chosen_points():
    """beta 0.11 (Libra RetinaNet): dL/du -> alpha (1/beta - 1) = 4.05 at zero error; just inside
    beta: gamma + alpha ((b beta + 1) / (beta (b + 1)) - 1); gamma outside."""
    beta = 0.11
    pts = torch.tensor(
        [1e-9, beta * (1 - 1e-9), 0.05, 2.0], dtype=torch.float64, requires_grad=True
    )
    bl1.balanced_l1_loss(pts, torch.zeros_like(pts), beta=beta, form="reference").sum().backward()
    g = pts.grad
    assert g[0].item() == pytest.approx(ALPHA * (1 / beta - 1), rel=1e-6)
    assert g[0].item() == pytest.approx(4.045, abs=1e-3)
    assert g[1].item() == pytest.approx(
        GAMMA + ALPHA * ((B * beta + 1) / (beta * (B + 1)) - 1), rel=1e-6
    )
    u = 0.05  # closed form inside: alpha ln(b u / beta + 1) + alpha ((b u + 1) / (b u + beta) - 1)
    assert g[2].item() == pytest.approx(
        ALPHA * math.log(B * u / beta + 1) + ALPHA * ((B * u + 1) / (B * u + beta) - 1), rel=1e-9
    )
    assert g[3].item() == pytest.approx(GAMMA)


def test_unknown_form_is_named():
    with pytest.raises(ValueError, match="form"):
        bl1.balanced_l1_loss(torch.zeros(1), torch.zeros(1), form="smooth")
    with pytest.raises(ValueError, match="form"):
        BalancedL1Loss(form="smooth")
