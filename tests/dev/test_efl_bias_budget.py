"""dev/efl_bias_budget.py: the two facts it rests on, that EFL's accumulated ``neg - pos`` of a
class is its biases' summed gradient, and that its SGD replay is PyTorch's SGD."""

import runpy

import torch

from libra_d2.layers.equalized_focal_loss import EqualizedFocalLoss

script = runpy.run_path("dev/efl_bias_budget.py")


def test_neg_minus_pos_is_the_bias_gradient():
    torch.manual_seed(0)
    num_anchor_types, num_classes, positions = 3, 5, 40
    features = torch.randn(positions, num_anchor_types, num_classes, dtype=torch.float64)
    bias = torch.full((num_anchor_types, num_classes), -4.0, dtype=torch.float64)
    bias.requires_grad_(True)
    targets = torch.zeros(positions, num_anchor_types, num_classes, dtype=torch.float64)
    targets[torch.arange(6), torch.arange(6) % 3, torch.tensor([0, 1, 1, 2, 4, 4])] = 1.0
    loss_fn = EqualizedFocalLoss(num_classes, scale=8.0).double()
    for _ in range(3):  # later calls use the updated g, so gamma differs per class
        loss_fn(features + bias, targets, normalizer=6.0).backward()
    pos, neg = loss_fn.statistics.pos_grad.clone(), loss_fn.statistics.neg_grad.clone()
    bias.grad = None
    loss_fn(features + bias, targets, normalizer=6.0).backward()
    step_pos = loss_fn.statistics.pos_grad - pos
    step_neg = loss_fn.statistics.neg_grad - neg
    assert torch.allclose(bias.grad.sum(0), (step_neg - step_pos).to(bias.grad), atol=1e-6)


def test_replay_matches_torch_sgd():
    b0 = torch.tensor([-4.6, -2.0, 0.5], dtype=torch.float64)
    gradient = torch.tensor([0.01, -0.03, 0.0], dtype=torch.float64)
    rates = [0.001 * (i + 1) for i in range(20)] + [0.02] * 30 + [0.002] * 10
    param = torch.nn.Parameter(b0.clone())
    optimizer = torch.optim.SGD([param], lr=rates[0], momentum=0.9, weight_decay=0.01)
    abs_sum = torch.zeros_like(b0)
    for lr in rates:
        optimizer.param_groups[0]["lr"] = lr
        abs_sum += param.detach().abs()
        param.grad = gradient.clone()
        optimizer.step()
    replayed, replayed_abs = script["replay_sgd"](b0, gradient, rates, 0.01, 0.9)
    assert torch.allclose(replayed, param.detach())
    assert torch.allclose(replayed_abs, abs_sum)
