"""Freezing parts of a model for decoupled fine-tuning (LOCE stage 2).

:func:`freeze_modules` sets ``requires_grad = False`` on every parameter under the given module
prefixes and keeps their BatchNorm layers in eval mode for good: each such layer's class is
swapped for a subclass whose ``train()`` always means ``train(False)``, so neither the trainer's
``model.train()`` nor the evaluation context's restore of the training mode can make it update its
running statistics again. The layer keeps its parameters, buffers and ``state_dict`` keys (a stage-1
checkpoint loads unchanged, unlike a conversion to ``FrozenBatchNorm2d``).

Call it before the optimizer and the DDP wrapper are built (``LibraTrainer.build_model`` does):
DDP only registers the parameters that require gradients at wrap time.
"""

from typing import Dict, List, Sequence

from torch import nn

__all__ = ["freeze_modules", "freeze_from_cfg", "is_frozen_norm"]

_EVAL_MODE_CLASSES: Dict[type, type] = {}


def _train_always_eval(self, mode: bool = True):
    return nn.Module.train(self, False)


def _eval_mode_class(cls: type) -> type:
    if getattr(cls, "_libra_frozen_norm", False):
        return cls
    if cls not in _EVAL_MODE_CLASSES:
        name = "EvalMode" + cls.__name__
        new = type(
            name,
            (cls,),
            {
                "train": _train_always_eval,
                "_libra_frozen_norm": True,
                "__module__": __name__,
                "__qualname__": name,
            },
        )
        globals().setdefault(name, new)  # picklable by name (first one of that name)
        _EVAL_MODE_CLASSES[cls] = new
    return _EVAL_MODE_CLASSES[cls]


def is_frozen_norm(module: nn.Module) -> bool:
    """True for a norm layer :func:`freeze_modules` pinned to eval mode."""
    return bool(getattr(type(module), "_libra_frozen_norm", False))


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def freeze_modules(model: nn.Module, prefixes: Sequence[str]) -> List[str]:
    """Freeze the submodules of ``model`` named by ``prefixes`` (e.g. ``"backbone"``,
    ``"roi_heads.box_head"``; DDP's ``module.`` is ignored). Returns the names of the parameters
    frozen. Raises ValueError for a prefix that names no submodule."""
    model = _unwrap(model)
    modules = dict(model.named_modules())
    frozen = []
    for prefix in prefixes:
        prefix = prefix.strip().rstrip(".")
        while prefix.startswith("module."):
            prefix = prefix[len("module.") :]
        if prefix not in modules:
            top = sorted({n.split(".")[0] for n in modules if n})
            raise ValueError(
                "cannot freeze '{}': no such module. Top-level modules: {}".format(
                    prefix, ", ".join(top)
                )
            )
        module = modules[prefix]
        for name, param in module.named_parameters():
            param.requires_grad_(False)
            frozen.append(prefix + "." + name)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.__class__ = _eval_mode_class(type(sub))
                sub.train(False)
    return sorted(set(frozen))


def freeze_from_cfg(cfg, model: nn.Module) -> List[str]:
    """``MODEL.LOCE.FREEZE`` when ``MODEL.LOCE.FINETUNE`` is on (nothing otherwise)."""
    loce = cfg.MODEL.get("LOCE", None)
    if loce is None or not loce.FINETUNE:
        return []
    return freeze_modules(model, list(loce.FREEZE))
