"""Gradient clipping for lazy configs: Detectron2's clipper applied from ``train.clip_gradients``."""
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
        {"clip_gradients": {"enabled": True, "clip_type": clip_type, "clip_value": 0.5 if clip_type == "value" else 1.0}}
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
        assert torch.allclose(_step(optim, param, torch.tensor([3.0, 4.0])), torch.tensor([3.0, 4.0]))


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
    assert clip_gradients_cfg(lazy.train.clip_gradients).SOLVER.CLIP_GRADIENTS == yaml.SOLVER.CLIP_GRADIENTS
