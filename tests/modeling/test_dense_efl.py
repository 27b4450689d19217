"""The EFL piece every dense detector shares (libra_d2/modeling/dense_efl.py), in EFLRetinaNet and
EFLFCOS alike: the gradient statistics per class in the detector's (anchor or anchor point, class)
layout, untouched by evaluation, kept by checkpoints, logged per frequency group."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from tiny_models import cfg_from
from tiny_models import fixed_batched_inputs as batched_inputs
from tiny_models import train_losses

DETECTORS = [
    "configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml",
    "configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml",
]
STAT_KEYS = ("efl.statistics.pos_grad", "efl.statistics.neg_grad")


@pytest.mark.parametrize("config", DETECTORS)
def test_statistics_per_class_and_checkpointed(config, tmp_path):
    """Only the classes of the ground truth (1, 5, 31) get positive gradient (a scrambled
    (anchor, class) layout would spread it), every class negative gradient; an evaluation pass
    leaves the statistics alone; checkpoints keep them."""
    model = build_model(cfg_from(config)).train()
    losses, _ = train_losses(model, batched_inputs())
    sum(losses.values()).backward()
    state = model.state_dict()
    pos, neg = state[STAT_KEYS[0]], state[STAT_KEYS[1]]
    assert pos.shape == neg.shape == (32,) and pos.dtype == neg.dtype == torch.float32
    assert set(torch.nonzero(pos > 0)[:, 0].tolist()) == {1, 5, 31}
    assert torch.all(neg > 0)
    assert torch.all(model.efl.statistics.ratio[[1, 5, 31]] > 0)

    model.eval()
    with torch.no_grad():
        model(batched_inputs())
    assert torch.equal(model.state_dict()[STAT_KEYS[0]], pos)

    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("efl")
    fresh = build_model(cfg_from(config))
    assert torch.all(fresh.efl.statistics.pos_grad == 0)
    DetectionCheckpointer(fresh).load(str(tmp_path / "efl.pth"))
    for key in STAT_KEYS:
        assert torch.equal(fresh.state_dict()[key], state[key]), key
    torch.testing.assert_close(fresh.efl.focusing_factors()[0], model.efl.focusing_factors()[0])


@pytest.mark.parametrize("config", DETECTORS)
def test_statistics_logged_per_frequency_group(config):
    model = build_model(cfg_from(config)).train()
    _, scalars = train_losses(model, batched_inputs(), it=0)
    gamma, weight = model.efl.focusing_factors()
    groups = model.frequency_groups
    ratio = model.efl.statistics.ratio
    for name, values in (("grad_ratio", ratio), ("gamma", gamma), ("weight", weight)):
        for group in ("r", "c", "f"):
            members = [v for v, gr in zip(values.tolist(), groups) if gr == group]
            assert scalars[f"efl/{name}/{group}"] == pytest.approx(
                sum(members) / len(members), rel=1e-6
            )
        assert scalars[f"efl/{name}/all"] == pytest.approx(values.mean().item(), rel=1e-6)
    _, off_period = train_losses(model, batched_inputs(), it=1)  # LOG_PERIOD 20
    assert not any(k.startswith("efl/") for k in off_period)
    model.frequency_groups = None  # no frequency information: the overall means only
    _, overall = train_losses(model, batched_inputs(), it=40)
    assert sorted(k for k in overall if k.startswith("efl/")) == [
        "efl/gamma/all",
        "efl/grad_ratio/all",
        "efl/weight/all",
    ]
