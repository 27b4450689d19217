"""Tests for libra_d2.layers.equilibrium_loss (LOCE Equilibrium Loss)."""

import math

import pytest
import torch
import torch.nn.functional as F

from libra_d2.layers.equilibrium_loss import adjust_logits, equilibrium_loss


def _case(seed, n, c1, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c1, generator=g) * scale
    labels = torch.randint(0, c1, (n,), generator=g)
    return logits, labels, g


@pytest.mark.parametrize(
    "seed,n,c1,s_value",
    [
        (0, 7, 5, 0.01),
        (1, 64, 11, 0.37),
        (2, 3, 2, 1.0),
        (3, 128, 81, 1e-3),
        (4, 5, 9, 0.0),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_equal_scores_is_exactly_cross_entropy(seed, n, c1, s_value, reduction):
    logits, labels, _ = _case(seed, n, c1)
    scores = torch.full((c1,), s_value)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ebl = equilibrium_loss(a, labels, scores, reduction=reduction)
    ce = F.cross_entropy(b, labels, reduction=reduction)
    assert torch.equal(ebl, ce)  # bit-identical, not just close
    ebl.sum().backward()
    ce.sum().backward()
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_equals_cross_entropy_on_log_adjusted_logits(seed, reduction):
    logits, labels, g = _case(seed, 50, 13)
    scores = torch.rand(13, generator=g) * 0.9 + 1e-3
    scores[-1] = 0.01  # LOCE's background substitute
    ebl = equilibrium_loss(logits, labels, scores, reduction=reduction)
    ref = F.cross_entropy(logits + scores.log(), labels, reduction=reduction)
    torch.testing.assert_close(ebl, ref, rtol=1e-5, atol=1e-5)


def test_matches_paper_margin_form_eq3_eq4():
    """L = log[1 + sum_{y' != y} exp(z_y' - z_y + log(s_y'/s_y))], evaluated naively in float64."""
    logits, labels, g = _case(7, 40, 6, scale=2.0)
    scores = torch.rand(6, generator=g) + 0.05
    z, s = logits.double(), scores.double()
    ref = []
    for i in range(z.shape[0]):
        y = int(labels[i])
        acc = 1.0
        for yp in range(z.shape[1]):
            if yp != y:
                delta = math.log(float(s[yp]) / float(s[y]))
                acc += math.exp(float(z[i, yp] - z[i, y]) + delta)
        ref.append(math.log(acc))
    ref = torch.tensor(ref, dtype=torch.float64)
    got = equilibrium_loss(logits, labels, scores, reduction="none").double()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # a different (wrong) sign of the margin would not match
    wrong = F.cross_entropy(logits - scores.log(), labels, reduction="none").double()
    assert not torch.allclose(wrong, ref, rtol=1e-3, atol=1e-3)


def test_margin_direction():
    """dL/dlog s_y = -(1 - p~_y) < 0 and dL/dlog s_y' = p~_y' > 0: with the same logits, a weak
    (low-score) ground-truth class gets a larger loss, and a dominant (high-score) negative class
    raises the loss."""
    c1 = 5
    logits = torch.tensor([[1.0, 1.0, 0.5, -0.3, 0.2]])
    scores = torch.tensor([0.05, 0.6, 0.3, 0.3, 0.01])  # class 0 weak, class 1 dominant
    weak = equilibrium_loss(logits, torch.tensor([0]), scores)
    strong = equilibrium_loss(logits, torch.tensor([1]), scores)
    assert weak > strong  # equal logits z_0 == z_1, lower score -> larger loss
    plain = F.cross_entropy(logits, torch.tensor([0]))
    assert weak > plain  # weak positive vs dominant negatives: margin > 0
    assert strong < F.cross_entropy(logits, torch.tensor([1]))
    # monotone in the scores
    base = equilibrium_loss(logits, torch.tensor([2]), scores)
    lower_pos = scores.clone()
    lower_pos[2] = 0.1
    assert equilibrium_loss(logits, torch.tensor([2]), lower_pos) > base
    higher_neg = scores.clone()
    higher_neg[3] = 0.9
    assert equilibrium_loss(logits, torch.tensor([2]), higher_neg) > base
    # the gradient w.r.t. the logits is softmax(z + log s) - onehot
    z = logits.clone().requires_grad_(True)
    equilibrium_loss(z, torch.tensor([0]), scores).backward()
    expected = torch.softmax(logits + scores.log(), dim=1) - F.one_hot(torch.tensor([0]), c1)
    torch.testing.assert_close(z.grad, expected)


def test_scores_are_constants_and_extremes_stay_finite():
    logits = torch.tensor(
        [[1e4, -1e4, 0.0, 3e3], [-1e4, -1e4, -1e4, 1e4], [0.0, 0.0, 0.0, 0.0]], requires_grad=True
    )
    labels = torch.tensor([1, 0, 3])
    scores = torch.tensor([0.0, 1e-38, 1.0, 1e-30], requires_grad=True)
    loss = equilibrium_loss(logits, labels, scores)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    assert scores.grad is None  # detached: no gradient flows into the statistics
    # half-precision logits are computed in float32
    half = equilibrium_loss(logits.detach().half(), labels, scores.detach())
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_empty_batch_keeps_graph():
    logits = torch.zeros(0, 6, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long)
    scores = torch.full((6,), 0.1)
    loss = equilibrium_loss(logits, labels, scores)
    assert loss.shape == () and float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and logits.grad.shape == (0, 6)
    assert float(equilibrium_loss(logits, labels, scores, reduction="sum").detach()) == 0.0
    assert equilibrium_loss(logits, labels, scores, reduction="none").shape == (0,)


def test_validation():
    logits = torch.randn(4, 5)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError):
        equilibrium_loss(logits, labels, torch.ones(4))  # C instead of C + 1 scores
    with pytest.raises(ValueError):
        equilibrium_loss(logits, labels, torch.ones(5), reduction="avg")
    # adjust_logits is a constant shift per row when scores are equal
    assert torch.equal(adjust_logits(logits, torch.full((5,), 0.2)), logits)
