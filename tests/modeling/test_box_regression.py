"""libra_d2.modeling.box_regression: the one mapping from a box-regression loss type to a loss in
delta space, and the dense (RPN / RetinaNet) loss that delegates Detectron2's types to Detectron2.
"""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling.box_regression import Box2BoxTransform, _dense_box_regression_loss
from detectron2.structures import Boxes
from fvcore.nn import smooth_l1_loss

from libra_d2.config import add_libra_config
from libra_d2.layers.balanced_l1 import balanced_l1_loss
from libra_d2.layers.gradient_reweighting import lgr_l1_loss
from libra_d2.modeling.box_regression import (
    LIBRA_DELTA_LOSSES,
    balanced_l1_params,
    delta_regression_loss,
    dense_box_regression_loss,
)

PARAMS = {"alpha": 0.4, "gamma": 1.2, "beta": 0.5}  # (each test passes the form it checks)


def deltas(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g) * 0.5


# ----------------------------------------------------------------------------- delta space


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_smooth_l1_is_fvcore(beta):
    pred, gt = deltas()
    out = delta_regression_loss(pred, gt, "smooth_l1", smooth_l1_beta=beta, balanced_l1=PARAMS)
    assert torch.equal(out, smooth_l1_loss(pred, gt, beta=beta, reduction="sum"))


def test_balanced_l1_dispatch():
    pred, gt = deltas()
    out = delta_regression_loss(pred, gt, "balanced_l1", smooth_l1_beta=0.0, balanced_l1=PARAMS)
    assert torch.equal(out, balanced_l1_loss(pred, gt, reduction="sum", **PARAMS))
    # None: the paper's alpha 0.5, gamma 1.5, beta 1.0
    out = delta_regression_loss(pred, gt, "balanced_l1")
    assert torch.equal(out, balanced_l1_loss(pred, gt, 0.5, 1.5, 1.0, reduction="sum"))
    # partial dicts fill in the rest from the defaults
    out = delta_regression_loss(pred, gt, "balanced_l1", balanced_l1={"beta": 0.11})
    assert torch.equal(out, balanced_l1_loss(pred, gt, 0.5, 1.5, 0.11, reduction="sum"))
    assert not torch.allclose(out, smooth_l1_loss(pred, gt, beta=0.11, reduction="sum"))


def test_lgr_l1_dispatch_has_balanced_l1_gradient():
    pred, gt = deltas()
    pred.requires_grad_(True)
    out = delta_regression_loss(pred, gt, "lgr_l1", balanced_l1=PARAMS)
    assert torch.equal(out, lgr_l1_loss(pred.detach(), gt, reduction="sum", **PARAMS))
    (g_lgr,) = torch.autograd.grad(out, pred)
    # LGR-L1's gradient is that of the continuous form (the integral of Eq. 8)
    bal = delta_regression_loss(
        pred, gt, "balanced_l1", balanced_l1=dict(PARAMS, form="continuous")
    )
    (g_bal,) = torch.autograd.grad(bal, pred)
    torch.testing.assert_close(g_lgr, g_bal)


def test_unknown_type_names_type_and_allowed():
    pred, gt = deltas()
    with pytest.raises(ValueError) as e:
        delta_regression_loss(pred, gt, "balanced_l2")
    msg = str(e.value)
    assert "balanced_l2" in msg
    for t in ("smooth_l1", "balanced_l1", "lgr_l1"):
        assert t in msg


def test_empty_input_is_zero_with_grad():
    pred = torch.zeros(0, 4, requires_grad=True)
    for t in ("smooth_l1",) + LIBRA_DELTA_LOSSES:
        out = delta_regression_loss(pred, torch.zeros(0, 4), t)
        assert out.item() == 0.0 and out.requires_grad


def test_balanced_l1_params_from_config():
    cfg = get_cfg()
    add_libra_config(cfg)
    assert balanced_l1_params(cfg.MODEL.RETINANET.BALANCED_L1) == {
        "alpha": 0.5,
        "gamma": 1.5,
        "beta": 0.11,
        "form": "reference",
    }
    cfg.MODEL.RPN.BALANCED_L1.ALPHA = 0.25
    cfg.MODEL.RPN.BALANCED_L1.FORM = "continuous"
    assert balanced_l1_params(cfg.MODEL.RPN.BALANCED_L1) == {
        "alpha": 0.25,
        "gamma": 1.5,
        "beta": 1.0,
        "form": "continuous",
    }
    cfg.MODEL.RPN.BALANCED_L1.FORM = "smooth"
    with pytest.raises(ValueError, match="FORM='smooth'"):
        balanced_l1_params(cfg.MODEL.RPN.BALANCED_L1)
    with pytest.raises(KeyError, match="add_libra_config"):
        balanced_l1_params(get_cfg().MODEL.RPN.get("BALANCED_L1"))


# ----------------------------------------------------------------------------- dense


def dense_case(n_img=2, seed=0):
    """Two levels of anchors, random predictions, matched GT boxes and a foreground mask."""
    g = torch.Generator().manual_seed(seed)

    def boxes(k):
        xy = torch.rand(k, 2, generator=g) * 50
        wh = torch.rand(k, 2, generator=g) * 30 + 4
        return torch.cat([xy, xy + wh], 1)

    anchors = [Boxes(boxes(40)), Boxes(boxes(24))]
    pred = [
        torch.randn(n_img, 40, 4, generator=g) * 0.3,
        torch.randn(n_img, 24, 4, generator=g) * 0.3,
    ]
    gt = [boxes(64) for _ in range(n_img)]
    fg = torch.rand(n_img, 64, generator=g) < 0.3
    return anchors, Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)), pred, gt, fg


@pytest.mark.parametrize("loss_type,beta", [("smooth_l1", 0.0), ("smooth_l1", 0.1), ("giou", 0.0)])
def test_dense_delegates_detectron2_types(loss_type, beta):
    case = dense_case()
    ours = dense_box_regression_loss(
        *case, box_reg_loss_type=loss_type, smooth_l1_beta=beta, balanced_l1=PARAMS
    )
    ref = _dense_box_regression_loss(*case, box_reg_loss_type=loss_type, smooth_l1_beta=beta)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("loss_type", LIBRA_DELTA_LOSSES)
def test_dense_libra_types_on_foreground_deltas(loss_type):
    anchors, b2b, pred, gt, fg = dense_case()
    ours = dense_box_regression_loss(anchors, b2b, pred, gt, fg, loss_type, 0.0, PARAMS)
    all_anchors = Boxes.cat(anchors).tensor
    gt_deltas = torch.stack([b2b.get_deltas(all_anchors, g) for g in gt])[fg]
    hand = (balanced_l1_loss if loss_type == "balanced_l1" else lgr_l1_loss)(
        torch.cat(pred, 1)[fg], gt_deltas, reduction="sum", **PARAMS
    )
    torch.testing.assert_close(ours, hand, rtol=1e-6, atol=1e-6)
    smooth = _dense_box_regression_loss(anchors, b2b, pred, gt, fg, "smooth_l1", 0.0)
    assert not torch.allclose(ours, smooth)


def test_dense_unknown_type_error_names_libra_types():
    with pytest.raises(ValueError) as e:
        dense_box_regression_loss(*dense_case(), box_reg_loss_type="balanced_l2")
    assert (
        "balanced_l2" in str(e.value) and "balanced_l1" in str(e.value) and "lgr_l1" in str(e.value)
    )


def test_dense_empty_foreground():
    anchors, b2b, pred, gt, fg = dense_case()
    pred = [p.requires_grad_(True) for p in pred]
    out = dense_box_regression_loss(anchors, b2b, pred, gt, torch.zeros_like(fg), "balanced_l1")
    assert out.item() == 0.0
    out.backward()
