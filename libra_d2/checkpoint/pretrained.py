"""``libra_d2://`` weights: checkpoints that libra_d2 makes locally (nothing can be downloaded
here), named in configs the way Detectron2 names its model-zoo weights (``detectron2://...``).

``MODEL.WEIGHTS: "libra_d2://pretrained/R-18-LTShapes-crops.pth"`` resolves, through Detectron2's
``PathManager``, to ``$LIBRA_D2_PRETRAINED/R-18-LTShapes-crops.pth``; the folder defaults to
``$DETECTRON2_DATASETS/pretrained`` (``./datasets/pretrained``). A missing file is an error that
names the command which builds it.
"""

import os

from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

__all__ = [
    "PRETRAINED_PREFIX",
    "TINY_BACKBONE_WEIGHTS",
    "TINY_FROM_SCRATCH",
    "LibraD2WeightsHandler",
    "pretrained_root",
    "resolve_weights",
]

PRETRAINED_PREFIX = "libra_d2://pretrained/"
#: the tiny family's ResNet-18, pre-trained on LT-Shapes-style object crops
TINY_BACKBONE_WEIGHTS = PRETRAINED_PREFIX + "R-18-LTShapes-crops.pth"
#: overrides that train a tiny LT-Shapes config from scratch instead of fine-tuning
#: TINY_BACKBONE_WEIGHTS: BatchNorm that trains (FrozenBN diverges from scratch), nothing frozen,
#: and the per-parameter gradient clip at 1.0 that training from scratch at lr 0.02 needs
TINY_FROM_SCRATCH = [
    "MODEL.WEIGHTS",
    "",
    "MODEL.RESNETS.NORM",
    "BN",
    "MODEL.BACKBONE.FREEZE_AT",
    "0",
    "SOLVER.CLIP_GRADIENTS.ENABLED",
    "True",
]
BUILD_COMMAND = "make pretrained   (or: python -m libra_d2.engine.backbone_pretraining)"


def pretrained_root() -> str:
    root = os.environ.get("LIBRA_D2_PRETRAINED")
    if root:
        return root
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "pretrained")


def resolve_weights(path: str) -> str:
    """The local file of a ``libra_d2://pretrained/<name>`` path (it need not exist yet)."""
    if not path.startswith(PRETRAINED_PREFIX):
        raise ValueError("not a libra_d2 weights path: {!r}".format(path))
    return os.path.join(pretrained_root(), path[len(PRETRAINED_PREFIX) :])


class LibraD2WeightsHandler(PathHandler):
    """Resolves ``libra_d2://pretrained/<name>`` to the local pre-trained checkpoint."""

    def _get_supported_prefixes(self):
        return [PRETRAINED_PREFIX]

    def _get_local_path(self, path, **kwargs):
        local = resolve_weights(path)
        if not os.path.isfile(local):
            raise FileNotFoundError(
                "{} is not built yet (looked for {}). Build it once with: {}".format(
                    path, local, BUILD_COMMAND
                )
            )
        return local

    def _isfile(self, path, **kwargs):
        return os.path.isfile(resolve_weights(path))

    def _exists(self, path, **kwargs):
        return os.path.exists(resolve_weights(path))

    def _open(self, path, mode="r", **kwargs):
        return PathManager.open(self._get_local_path(path), mode, **kwargs)


PathManager.register_handler(LibraD2WeightsHandler())
