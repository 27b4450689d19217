"""Gradient clipping for lazy configs: Detectron2's clipper applied from
``train.clip_gradients``."""

import pytest
import torch
from detectron2.config import LazyConfig
from omegaconf import OmegaConf

from libra_d2.solver import add_gradient_clipping_from_train_cfg, clip_gradients_cfg


def _step(optimizer, param, grad):
    param.grad = grad.clone()
    before = param.detach().clone()
    optimizer.step()
    return before - param.detach()


@pytest.mark.parametrize("clip_type,expected", [("norm", [0.6, 0.8]), ("value", [0.5, 0.5])])
def test_clipping_follows_train_cfg(clip_type, expected):
    param = torch.nn.Parameter(torch.zeros(2))
    train = OmegaConf.create(
        {
            "clip_gradients": {
                "enabled": True,
                "clip_type": clip_type,
                "clip_value": 0.5 if clip_type == "value" else 1.0,
            }
        }
    )
    optim = add_gradient_clipping_from_train_cfg(torch.optim.SGD([param], lr=1.0), train)
    # gradient (3, 4): L2 norm 5 -> clipped to norm 1 = (0.6, 0.8); by value 0.5 -> (0.5, 0.5)
    update = _step(optim, param, torch.tensor([3.0, 4.0]))
    assert torch.allclose(update, torch.tensor(expected))


def test_disabled_or_missing_leaves_optimizer_alone():
    param = torch.nn.Parameter(torch.zeros(2))
    for train in (OmegaConf.create({}), OmegaConf.create({"clip_gradients": {"enabled": False}})):
        optim = torch.optim.SGD([param], lr=1.0)
        assert type(add_gradient_clipping_from_train_cfg(optim, train)) is torch.optim.SGD
        assert torch.allclose(
            _step(optim, param, torch.tensor([3.0, 4.0])), torch.tensor([3.0, 4.0])
        )


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(KeyError, match="clip_value"):
        clip_gradients_cfg({"enabled": True, "clip_norm": 1.0})


def test_tiny_lazy_config_clips_like_its_yaml_twin():
    from detectron2.config import get_cfg

    import libra_d2

    lazy = LazyConfig.load("configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py")
    yaml = get_cfg()
    libra_d2.add_libra_config(yaml)
    yaml.merge_from_file("configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml")
    assert (
        clip_gradients_cfg(lazy.train.clip_gradients).SOLVER.CLIP_GRADIENTS
        == yaml.SOLVER.CLIP_GRADIENTS
    )


def _two_params():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))
    return a, b, [torch.randn(3) * 10, torch.randn(2, 2) * 10]


def test_full_model_clip_bounds_the_total_norm():
    """CLIP_TYPE full_model: after clipping, the norm over all parameters together equals the
    bound (per-parameter "norm" leaves the total at up to sqrt(#tensors) x the bound)."""
    from libra_d2.solver import clip_gradients_

    a, b, grads = _two_params()
    a.grad, b.grad = grads[0].clone(), grads[1].clone()
    total_before = torch.cat([g.reshape(-1) for g in grads]).norm()
    norm, clipped = clip_gradients_([a, b], "full_model", 1.0)
    after = torch.cat([a.grad.reshape(-1), b.grad.reshape(-1)]).norm()
    assert norm == pytest.approx(float(total_before)) and clipped == 1.0
    assert after == pytest.approx(1.0, rel=1e-5)
    # the direction is kept: one common scale factor
    torch.testing.assert_close(a.grad, grads[0] * (1.0 / total_before), rtol=1e-4, atol=1e-6)
    # under the bound: untouched, and reported as not clipped
    a.grad, b.grad = grads[0] * 1e-3, grads[1] * 1e-3
    _, clipped = clip_gradients_([a, b], "full_model", 1.0)
    assert clipped == 0.0 and torch.equal(a.grad, grads[0] * 1e-3)


@pytest.mark.parametrize("clip_type", ["norm", "value"])
def test_per_parameter_types_equal_detectron2s_clipper(clip_type):
    from detectron2.solver.build import maybe_add_gradient_clipping as d2_clipping

    from libra_d2.solver import maybe_add_gradient_clipping

    cfg = clip_gradients_cfg({"enabled": True, "clip_type": clip_type, "clip_value": 1.0})
    updates = []
    for wrap in (d2_clipping, maybe_add_gradient_clipping):
        a, b, grads = _two_params()
        optim = wrap(cfg, torch.optim.SGD([a, b], lr=1.0))
        a.grad, b.grad = grads[0].clone(), grads[1].clone()
        optim.step()
        updates.append(torch.cat([a.detach().reshape(-1), b.detach().reshape(-1)]))
    assert torch.equal(updates[0], updates[1])


def test_clip_is_logged_every_step():
    from detectron2.utils.events import EventStorage

    from libra_d2.solver import maybe_add_gradient_clipping
    from libra_d2.utils.events import flush_deferred_scalars

    a, b, grads = _two_params()
    cfg = clip_gradients_cfg({"enabled": True, "clip_type": "full_model", "clip_value": 1.0})
    optim = maybe_add_gradient_clipping(cfg, torch.optim.SGD([a, b], lr=0.1))
    with EventStorage(0) as storage:
        for scale in (1.0, 1e-4):
            a.grad, b.grad = grads[0] * scale, grads[1] * scale
            optim.step()
            flush_deferred_scalars(storage)
            storage.step()
        clipped = [v for v, _ in storage.history("clip/clipped_fraction").values()]
        norms = [v for v, _ in storage.history("clip/total_norm").values()]
    assert clipped == [1.0, 0.0] and norms[0] > 1.0 > norms[1]


def test_unknown_clip_type_is_named():
    from libra_d2.solver import maybe_add_gradient_clipping

    cfg = clip_gradients_cfg({"enabled": True, "clip_type": "global"})
    with pytest.raises(ValueError, match="CLIP_TYPE='global'.*full_model"):
        maybe_add_gradient_clipping(
            cfg, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1)
        )
