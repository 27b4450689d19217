"""R-CNN Gradient Annealing (RGA).

The gradients of the R-CNN module's parameters (box head and box predictor; optionally the mask
head) are multiplied by

    lambda_t = lambda0 - (lambda0 - 1) * t / T        (lambda_t = 1 for t >= T)

before the optimizer step, where t is the iteration and T the annealing end (by default the
schedule's total iterations, SOLVER.MAX_ITER). Backbone and RPN gradients are left untouched.
In its constant mode lambda_t = lambda0 throughout (the paper's non-annealed ablation row).

Order within a training step (:class:`~libra_d2.engine.LibraTrainLoop`)::

    forward -> backward (DDP all-reduces gradients here) -> [AMP: GradScaler.unscale_]
            -> after_backward hooks: RGA scales the R-CNN gradients
            -> optimizer.step(): Detectron2's gradient clipping (maybe_add_gradient_clipping wraps
               step, so it clips the *scaled* gradients) and weight decay (not scaled), then update

This is the order of the paper's implementation (scale, all-reduce, clip, step; scaling commutes
with the all-reduce). Under AMP the hook sees true (unscaled) gradients, and ``GradScaler.step``
still skips steps whose gradients overflowed (it decides from the unscale_ above).

lambda_t is derived from ``trainer.iter`` at every step, so a resumed run follows the schedule
from the resumed iteration without any saved state.

One construction path: :class:`GradientAnnealing` is ``@configurable``. YAML configs:
``MODEL.RGA.*`` (see ``libra_d2/config/rga_prm.py``) through ``from_config``; the hook is added to
:class:`~libra_d2.engine.LibraTrainer` through ``TRAINER_HOOK_REGISTRY``. Lazy configs list it in
``train.hooks`` (``L(GradientAnnealing)(lambda0=7.0)``), which ``projects/lazy_train_net.py``
instantiates; custom loops construct it with plain arguments. Any trainer works
that calls ``after_backward`` of its hooks between backward and the optimizer step (libra_d2's
``LibraTrainLoop`` on every Detectron2 version; Detectron2 main's own ``SimpleTrainer`` too, but
not 0.6's).
"""

import logging
from typing import Iterable, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.engine import HookBase
from torch import nn

from .hooks import TRAINER_HOOK_REGISTRY

__all__ = [
    "DEFAULT_RCNN_MODULES",
    "GradientAnnealing",
    "annealing_factor",
    "build_gradient_annealing_hook",
    "select_parameters",
]

logger = logging.getLogger(__name__)

#: Module-name prefixes of the R-CNN module: Detectron2's single box head / predictor
#: (``StandardROIHeads``, ``LibraROIHeads``; Cascade R-CNN's per-stage lists are under the same
#: names) and ParallelROIHeads' per-head lists ``box_heads.<k>`` / ``box_predictors.<k>``.
DEFAULT_RCNN_MODULES = (
    "roi_heads.box_head",
    "roi_heads.box_predictor",
    "roi_heads.box_heads",
    "roi_heads.box_predictors",
)
MASK_HEAD_MODULE = "roi_heads.mask_head"


def annealing_factor(
    iteration: int, lambda0: float, end_iter: int, constant: bool = False
) -> float:
    """The gradient multiplier of RGA at ``iteration``.

    ``lambda0 - (lambda0 - 1) * iteration / end_iter``, which is ``lambda0`` at iteration 0, reaches
    1 at ``end_iter`` and stays 1 afterwards. With ``constant=True``: ``lambda0`` at every
    iteration.
    """
    if constant:
        return float(lambda0)
    if end_iter <= 0:
        raise ValueError("RGA end_iter must be positive, got {}".format(end_iter))
    t = min(max(int(iteration), 0), int(end_iter))
    return float(lambda0) - (float(lambda0) - 1.0) * t / float(end_iter)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip(".")
    while prefix.startswith("module."):  # written against a DDP-wrapped model
        prefix = prefix[len("module.") :]
    return prefix


def select_parameters(model: nn.Module, prefixes: Iterable[str]) -> List[tuple]:
    """``[(name, param)]`` of the trainable parameters of ``model`` inside the modules named by
    ``prefixes``. A prefix matches whole name components: ``roi_heads.box_head`` selects
    ``roi_heads.box_head.fc1.weight`` but not ``roi_heads.box_heads.0.fc1.weight``. Names are those
    of the unwrapped model (DDP's ``module.`` is ignored on both sides)."""
    prefixes = [_normalize_prefix(p) for p in prefixes]
    selected = []
    for name, param in _unwrap(model).named_parameters():
        if not param.requires_grad:
            continue
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            selected.append((name, param))
    return selected


class GradientAnnealing(HookBase):
    """Multiplies the R-CNN module's gradients by :func:`annealing_factor` in ``after_backward``
    and logs the factor as ``rga/lambda`` in the EventStorage every step.

    Args:
        lambda0: initial multiplier (paper: 7; 5 to 9 all help).
        end_iter: iteration at which lambda reaches 1; None or <= 0: the trainer's ``max_iter``.
        constant: keep lambda = lambda0 (no annealing).
        modules: module-name prefixes whose parameters are scaled (see :func:`select_parameters`).
        include_mask_head: also scale ``roi_heads.mask_head``.
    """

    @configurable
    def __init__(
        self,
        lambda0: float = 7.0,
        end_iter: Optional[int] = None,
        constant: bool = False,
        modules: Sequence[str] = DEFAULT_RCNN_MODULES,
        include_mask_head: bool = False,
    ):
        if lambda0 <= 0:
            raise ValueError("RGA lambda0 must be positive, got {}".format(lambda0))
        self.lambda0 = float(lambda0)
        self.end_iter = int(end_iter) if end_iter is not None and end_iter > 0 else None
        self.constant = bool(constant)
        self.modules = [str(m) for m in modules]
        if include_mask_head and MASK_HEAD_MODULE not in self.modules:
            self.modules.append(MASK_HEAD_MODULE)
        self._params = None
        self._param_names = []

    @classmethod
    def from_config(cls, cfg):
        rga = cfg.MODEL.RGA
        return {
            "lambda0": rga.LAMBDA0,
            "end_iter": rga.END_ITER if rga.END_ITER > 0 else cfg.SOLVER.MAX_ITER,
            "constant": rga.CONSTANT,
            "modules": list(rga.MODULES),
            "include_mask_head": rga.INCLUDE_MASK_HEAD,
        }

    def before_train(self):
        # Selected once: the set of parameters does not change during training.
        selected = select_parameters(self.trainer.model, self.modules)
        if not selected:
            names = sorted(
                {
                    n.split(".")[0] + "." + n.split(".")[1]
                    for n, _ in _unwrap(self.trainer.model).named_parameters()
                    if "." in n
                }
            )
            raise ValueError(
                "R-CNN Gradient Annealing: no trainable parameter under {} (MODEL.RGA.MODULES). "
                "Modules of this model: {}".format(self.modules, ", ".join(names))
            )
        self._param_names = [n for n, _ in selected]
        self._params = [p for _, p in selected]
        if self.end_iter is None and not self.constant:
            self.end_iter = int(self.trainer.max_iter)
        logger.info(
            "R-CNN Gradient Annealing: lambda0=%g, %s, %d parameter tensors under %s",
            self.lambda0,
            "constant" if self.constant else "annealed to 1 at iteration {}".format(self.end_iter),
            len(self._params),
            self.modules,
        )

    @property
    def parameter_names(self) -> List[str]:
        """Names of the parameters whose gradients are scaled (after ``before_train``)."""
        return list(self._param_names)

    def current_lambda(self) -> float:
        end_iter = self.end_iter if self.end_iter is not None else self.trainer.max_iter
        return annealing_factor(self.trainer.iter, self.lambda0, end_iter, self.constant)

    @torch.no_grad()
    def after_backward(self):
        if self._params is None:  # used without before_train (e.g. a custom loop)
            self.before_train()
        lam = self.current_lambda()
        if lam != 1.0:
            grads = [p.grad for p in self._params if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, lam)
        self.trainer.storage.put_scalar("rga/lambda", lam, smoothing_hint=False)


@TRAINER_HOOK_REGISTRY.register()
def build_gradient_annealing_hook(trainer) -> Optional[GradientAnnealing]:
    """``MODEL.RGA`` -> the hook, or None when ``MODEL.RGA.ENABLED`` is False."""
    if not trainer.cfg.MODEL.RGA.ENABLED:
        return None
    return GradientAnnealing(trainer.cfg)
