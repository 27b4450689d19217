"""Box-regression losses in delta space, with Libra R-CNN's objective-level balance.

The single place that maps a box-regression loss *type* to a loss:

* :func:`delta_regression_loss` -- the loss between predicted and target deltas (summed) for
  "smooth_l1" (Detectron2's), "balanced_l1" (Libra R-CNN journal, Sec. 3.3.1, Eq. 9) and
  "lgr_l1" (Sec. 3.3.2, Eq. 14: smooth L1 with the balanced-L1 gradient). Used by the R-CNN box
  predictor, the RPN and RetinaNet alike.
* :func:`dense_box_regression_loss` -- Detectron2's ``_dense_box_regression_loss`` contract
  (RPN, RetinaNet): the Libra types are computed here, every other type ("smooth_l1", "giou",
  "diou", "ciou", whatever the installed Detectron2 supports) is delegated to Detectron2's function,
  so Detectron2's types behave exactly as in Detectron2.
* :func:`balanced_l1_params` -- the ``ALPHA / GAMMA / BETA`` of a ``BALANCED_L1`` config node.

The Libra types are selected by the existing ``BBOX_REG_LOSS_TYPE`` keys and parameterised by the
``BALANCED_L1`` node next to them (``libra_d2.config.add_libra_rcnn_config``).
"""

from typing import Dict, List, Optional

import torch
from detectron2.layers import cat
from detectron2.modeling.box_regression import _dense_box_regression_loss
from fvcore.nn import smooth_l1_loss

from ..layers.balanced_l1 import BALANCED_L1_FORMS, balanced_l1_loss
from ..layers.gradient_reweighting import lgr_l1_loss

__all__ = [
    "LIBRA_DELTA_LOSSES",
    "DELTA_LOSSES",
    "balanced_l1_params",
    "delta_regression_loss",
    "dense_box_regression_loss",
]

#: Loss types libra_d2 adds to Detectron2's ``BBOX_REG_LOSS_TYPE``; both act on deltas.
LIBRA_DELTA_LOSSES = ("balanced_l1", "lgr_l1")
#: Every type :func:`delta_regression_loss` accepts.
DELTA_LOSSES = ("smooth_l1",) + LIBRA_DELTA_LOSSES

#: The paper's Balanced L1 setting (Sec. 3.3.1: alpha 0.5, gamma 1.5, transition point 1), in the
#: reference's form (the same loss as "continuous" at beta 1; see ``BALANCED_L1.FORM``).
DEFAULT_BALANCED_L1 = {"alpha": 0.5, "gamma": 1.5, "beta": 1.0, "form": "reference"}


def balanced_l1_params(cfg_node) -> Dict[str, float]:
    """``{"alpha", "gamma", "beta"}`` from a ``BALANCED_L1`` config node (e.g.
    ``cfg.MODEL.RETINANET.BALANCED_L1``).

    Raises a KeyError naming the fix when the node is missing (``None``): the keys come from
    :func:`libra_d2.add_libra_config`.
    """
    if cfg_node is None:
        raise KeyError(
            "The BALANCED_L1 config node is missing: call libra_d2.add_libra_config(cfg) before "
            "building the model"
        )
    form = str(cfg_node.get("FORM", DEFAULT_BALANCED_L1["form"]))
    if form not in BALANCED_L1_FORMS:
        raise ValueError(
            "BALANCED_L1.FORM={!r}; expected one of {}".format(form, BALANCED_L1_FORMS)
        )
    return {
        "alpha": float(cfg_node.ALPHA),
        "gamma": float(cfg_node.GAMMA),
        "beta": float(cfg_node.BETA),
        "form": form,
    }


def delta_regression_loss(
    pred_deltas: torch.Tensor,
    gt_deltas: torch.Tensor,
    loss_type: str,
    *,
    smooth_l1_beta: float = 0.0,
    balanced_l1: Optional[Dict[str, float]] = None,
) -> torch.Tensor:
    """Summed box-regression loss between predicted and target deltas (same shape).

    Args:
        pred_deltas, gt_deltas: (R, B) deltas of the foreground samples.
        loss_type: "smooth_l1" (fvcore's, as in Detectron2; ``smooth_l1_beta`` 0 is L1),
            "balanced_l1" (:func:`~libra_d2.layers.balanced_l1.balanced_l1_loss`) or "lgr_l1"
            (:func:`~libra_d2.layers.gradient_reweighting.lgr_l1_loss`, whose smooth-L1 transition
            point is ``balanced_l1["beta"]``, so its gradient is the balanced L1 gradient with the
            same parameters).
        smooth_l1_beta: transition point of "smooth_l1" (unused by the Libra types).
        balanced_l1: ``{"alpha", "gamma", "beta"}`` of the Libra types; None: the paper's
            (0.5, 1.5, 1.0).

    Returns:
        The loss summed over all elements (a scalar tensor, 0 for empty inputs).
    """
    if loss_type == "smooth_l1":
        return smooth_l1_loss(pred_deltas, gt_deltas, beta=smooth_l1_beta, reduction="sum")
    params = dict(DEFAULT_BALANCED_L1, **(balanced_l1 or {}))
    form = params.pop("form")  # (LGR-L1 is defined by its gradient: it has no form)
    if loss_type == "balanced_l1":
        return balanced_l1_loss(pred_deltas, gt_deltas, reduction="sum", form=form, **params)
    if loss_type == "lgr_l1":
        return lgr_l1_loss(pred_deltas, gt_deltas, reduction="sum", **params)
    raise ValueError(
        f"Unknown box regression loss type {loss_type!r} for a loss in delta space; "
        f"allowed types: {', '.join(DELTA_LOSSES)}"
    )


def dense_box_regression_loss(
    anchors: List,
    box2box_transform,
    pred_anchor_deltas: List[torch.Tensor],
    gt_boxes: List[torch.Tensor],
    fg_mask: torch.Tensor,
    box_reg_loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
    balanced_l1: Optional[Dict[str, float]] = None,
) -> torch.Tensor:
    """Detectron2's ``_dense_box_regression_loss`` plus the Libra types (summed over ``fg_mask``).

    Args:
        anchors: #lvl anchor boxes (``Boxes`` or ``RotatedBoxes``), each (Hi*Wi*A, B).
        box2box_transform: the transform that encodes boxes as deltas w.r.t. anchors.
        pred_anchor_deltas: #lvl predictions, each (N, Hi*Wi*A, B).
        gt_boxes: N tensors (R, B) of matched ground-truth boxes (R = sum(Hi*Wi*A)).
        fg_mask: (N, R) bool, the anchors the loss is computed on.
        box_reg_loss_type: "balanced_l1" / "lgr_l1" (computed here on the foreground deltas), or
            any type of Detectron2's function, which then computes the loss.
        smooth_l1_beta: Detectron2's "smooth_l1" transition point.
        balanced_l1: ``{"alpha", "gamma", "beta"}`` of the Libra types (see
            :func:`delta_regression_loss`).
    """
    if box_reg_loss_type not in LIBRA_DELTA_LOSSES:
        return _detectron2_dense_loss(
            anchors,
            box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            fg_mask,
            box_reg_loss_type,
            smooth_l1_beta,
        )
    anchors = type(anchors[0]).cat(anchors).tensor  # (R, B)
    fg_anchors = anchors.unsqueeze(0).expand(fg_mask.shape[0], -1, -1)[fg_mask]
    # deltas of the foreground anchors only (Detectron2 encodes all N x R, then masks: same values)
    gt_deltas = box2box_transform.get_deltas(fg_anchors, torch.stack(gt_boxes)[fg_mask])
    pred_deltas = cat(pred_anchor_deltas, dim=1)[fg_mask]
    return delta_regression_loss(
        pred_deltas,
        gt_deltas,
        box_reg_loss_type,
        smooth_l1_beta=smooth_l1_beta,
        balanced_l1=balanced_l1,
    )


def _detectron2_dense_loss(
    anchors, box2box_transform, pred_anchor_deltas, gt_boxes, fg_mask, loss_type, smooth_l1_beta
):
    """Detectron2's function; an unknown type's error also names the Libra types."""
    try:
        return _dense_box_regression_loss(
            anchors,
            box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            fg_mask,
            box_reg_loss_type=loss_type,
            smooth_l1_beta=smooth_l1_beta,
        )
    except ValueError as e:
        if str(loss_type) not in str(e):  # some other ValueError
            raise
        raise ValueError(
            f"{e}. Besides Detectron2's types, libra_d2 accepts {', '.join(LIBRA_DELTA_LOSSES)}"
        ) from e
