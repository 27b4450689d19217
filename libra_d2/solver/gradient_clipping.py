"""Gradient clipping (``SOLVER.CLIP_GRADIENTS``) with the whole-model type, logged, for YAML and
lazy configs.

``CLIP_TYPE``:

* ``"value"``, ``"norm"``: Detectron2's per-parameter clipping (``clip_grad_value_`` /
  ``clip_grad_norm_`` on each parameter tensor separately): the same math as Detectron2's
  ``maybe_add_gradient_clipping``.
* ``"full_model"``: one ``clip_grad_norm_`` over all the parameters together (the total gradient
  norm is bounded by ``CLIP_VALUE``), as EFL's and DETR's reference code clip and as Detectron2's
  own projects add it in their train_net (Detectron2 core has no such type). A much weaker guard
  per tensor, but the one that bounds the whole update.

The clipping runs inside ``optimizer.step()``, i.e. after every ``after_backward`` hook (RGA's
gradient scaling included). Every step logs how hard it acted, to the ``EventStorage``:
``clip/total_norm`` (full_model: the total norm before clipping) or ``clip/max_norm`` (norm: the
largest parameter norm before clipping), and ``clip/clipped_fraction`` (the fraction of the
clipped tensors, the whole model counting as one; 0 when the clip did nothing). No value is read
back to the host for this (``put_scalar_deferred``).

YAML: :meth:`LibraTrainer.build_optimizer` applies :func:`maybe_add_gradient_clipping`. Lazy
configs set ``train.clip_gradients = dict(enabled=True, clip_type="full_model", clip_value=35.0,
norm_type=2.0)`` (the keys of ``SOLVER.CLIP_GRADIENTS``, lower case), applied by the launcher
through :func:`add_gradient_clipping_from_train_cfg`. That dict has no defaults of its own: it is
read over Detectron2's ``SOLVER.CLIP_GRADIENTS`` (unknown keys are refused), so both config kinds
reach :func:`maybe_add_gradient_clipping` with the same defaults. It is a ``train`` option rather
than a LazyCall wrapping ``optimizer`` so that Detectron2's usual ``optimizer.lr=...`` overrides and
``optimizer.params.model`` keep their paths.
"""

import copy
import itertools
from typing import Mapping, Optional

import torch
from detectron2.config import CfgNode, get_cfg

from ..utils.events import put_scalar_deferred

__all__ = [
    "CLIP_TYPES",
    "clip_gradients_cfg",
    "clip_gradients_",
    "maybe_add_gradient_clipping",
    "add_gradient_clipping_from_train_cfg",
    "build_optimizer_with_clipping",
]

CLIP_TYPES = ("value", "norm", "full_model")


def clip_gradients_(params, clip_type: str, clip_value: float, norm_type: float = 2.0):
    """Clip the gradients of ``params`` in place by ``clip_type``; returns ``(norm, clipped)``:
    the statistic that was compared with ``clip_value`` (largest |g| for value, largest parameter
    norm for norm, total norm for full_model) and the fraction of tensors clipped, both tensors."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        zero = torch.zeros(())
        return zero, zero
    if clip_type == "full_model":
        total = torch.nn.utils.clip_grad_norm_(grads, clip_value, norm_type)
        return total, (total > clip_value).float()
    if clip_type == "norm":
        norms = torch.stack(
            [
                torch.nn.utils.clip_grad_norm_(p, clip_value, norm_type).to(grads[0].device)
                for p in grads
            ]
        )
    elif clip_type == "value":
        norms = torch.stack([p.grad.detach().abs().max().to(grads[0].device) for p in grads])
        for p in grads:
            torch.nn.utils.clip_grad_value_(p, clip_value)
    else:
        raise ValueError(
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE={!r}; expected one of {}".format(
                clip_type, ", ".join(CLIP_TYPES)
            )
        )
    return norms.max(), (norms > clip_value).float().mean()


def _log(name, value):
    try:
        put_scalar_deferred(name, value)
    except AssertionError:  # no EventStorage (a step outside training): nothing to log to
        pass


def maybe_add_gradient_clipping(cfg: CfgNode, optimizer: torch.optim.Optimizer):
    """``optimizer`` with ``cfg.SOLVER.CLIP_GRADIENTS`` applied in its ``step()`` (module doc);
    unchanged when it is disabled."""
    node = cfg.SOLVER.CLIP_GRADIENTS
    if not node.ENABLED:
        return optimizer
    clip_type = str(node.CLIP_TYPE).lower()
    if clip_type not in CLIP_TYPES:
        raise ValueError(
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE={!r}; expected one of {}".format(
                node.CLIP_TYPE, ", ".join(CLIP_TYPES)
            )
        )
    clip_value, norm_type = float(node.CLIP_VALUE), float(node.NORM_TYPE)
    stat = (
        "clip/total_norm"
        if clip_type == "full_model"
        else ("clip/max_norm" if clip_type == "norm" else "clip/max_abs_grad")
    )
    base = type(optimizer)

    def step(self, closure=None):
        params = itertools.chain(*[g["params"] for g in self.param_groups])
        norm, clipped = clip_gradients_(params, clip_type, clip_value, norm_type)
        _log(stat, norm)
        _log("clip/clipped_fraction", clipped)
        return base.step(self, closure)

    optimizer.__class__ = type(base.__name__ + "WithGradientClip", (base,), {"step": step})
    return optimizer


def clip_gradients_cfg(options: Optional[Mapping]) -> CfgNode:
    """A config with ``SOLVER.CLIP_GRADIENTS`` set from lower-case ``options`` over Detectron2's
    defaults. Unknown keys raise ``KeyError`` naming the valid ones."""
    cfg = get_cfg()
    node = cfg.SOLVER.CLIP_GRADIENTS
    for key, value in dict(options or {}).items():
        name = key.upper()
        if name not in node:
            raise KeyError(
                "train.clip_gradients.{}: unknown option; valid: {}".format(
                    key, ", ".join(sorted(k.lower() for k in node))
                )
            )
        node[name] = value
    return cfg


def add_gradient_clipping_from_train_cfg(
    optimizer: torch.optim.Optimizer, train_cfg
) -> torch.optim.Optimizer:
    """``optimizer`` with gradient clipping if ``train_cfg.clip_gradients.enabled`` (else
    unchanged)."""
    options = train_cfg.get("clip_gradients") if hasattr(train_cfg, "get") else None
    return maybe_add_gradient_clipping(clip_gradients_cfg(options), optimizer)


def build_optimizer_with_clipping(cfg: CfgNode, model, build_optimizer):
    """``build_optimizer(cfg, model)`` (Detectron2's) without its own clipping, then this module's:
    the same optimizer, with the ``full_model`` type and the logging."""
    plain = copy.deepcopy(cfg)
    plain.defrost()
    plain.SOLVER.CLIP_GRADIENTS.ENABLED = False
    return maybe_add_gradient_clipping(cfg, build_optimizer(plain, model))
