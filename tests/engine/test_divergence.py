"""A loss that explodes but stays finite stops the run like a NaN does."""

import itertools

import pytest
import torch
from torch import nn

from libra_d2.engine import LibraTrainLoop
from libra_d2.engine.divergence import loss_explosion


def test_loss_explosion_rule():
    steady = [1.0 + 0.01 * i for i in range(20)]
    assert loss_explosion(steady + [1.5]) is None
    assert loss_explosion(steady + [1e4]) is None  # below 1e4 x the median (1.095)
    why = loss_explosion(steady + [2e4])
    assert why is not None and "over 10000x the median 1.095 of the 20 steps before" in why
    assert loss_explosion(steady[:5] + [1e9]) is None  # too little history to judge
    assert loss_explosion(steady + [30.0], factor=10.0) is not None


class _ScriptedLoss(nn.Module):
    """Loss = w^2 * scale, where ``scale`` jumps 1e6x from step ``jump_at`` on."""

    def __init__(self, jump_at):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.jump_at, self.steps = jump_at, 0

    def forward(self, batch):
        scale = 1e6 if self.steps >= self.jump_at else 1.0
        self.steps += 1
        return {"loss": (self.w**2).sum() * scale}


@pytest.mark.parametrize("factor", [1e4, None])
def test_exploded_finite_loss_stops_before_its_step(factor):
    model = _ScriptedLoss(jump_at=25)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loop = LibraTrainLoop(model, itertools.repeat(None), optimizer, loss_explosion_factor=factor)
    if factor is None:  # the check off: the run goes on (Detectron2's behaviour)
        loop.train(0, 30)
        return
    with pytest.raises(FloatingPointError, match="Loss exploded at iteration 25: the loss"):
        loop.train(0, 30)
    # the exploded step's update was not applied: w is what 25 sound steps made of it
    assert model.w.item() == pytest.approx((1 - 2e-3) ** 25)
