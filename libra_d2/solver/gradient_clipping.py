"""Detectron2's gradient clipping (``SOLVER.CLIP_GRADIENTS``) for lazy configs.

Detectron2 clips gradients only for YAML configs (``build_optimizer`` reads
``SOLVER.CLIP_GRADIENTS``); its lazy optimizer configs have no such option. A lazy config sets
``train.clip_gradients = dict(enabled=True, clip_type="norm", clip_value=1.0, norm_type=2.0)`` (the
keys of ``SOLVER.CLIP_GRADIENTS``, lower case) and the launcher calls
:func:`add_gradient_clipping_from_train_cfg`, which applies Detectron2's own
``maybe_add_gradient_clipping`` to the instantiated optimizer: the same clipper, in the same place
(inside ``optimizer.step()``, i.e. after every ``after_backward`` hook such as RGA's gradient scaling).
"""
from typing import Mapping, Optional

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.solver.build import maybe_add_gradient_clipping

__all__ = ["clip_gradients_cfg", "add_gradient_clipping_from_train_cfg"]


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


def add_gradient_clipping_from_train_cfg(optimizer: torch.optim.Optimizer, train_cfg) -> torch.optim.Optimizer:
    """``optimizer`` with gradient clipping if ``train_cfg.clip_gradients.enabled`` (else unchanged)."""
    options = train_cfg.get("clip_gradients") if hasattr(train_cfg, "get") else None
    cfg = clip_gradients_cfg(options)
    return maybe_add_gradient_clipping(cfg, optimizer)
