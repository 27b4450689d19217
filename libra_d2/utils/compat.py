"""Every difference between the versions libra_d2 runs on, in one place: Detectron2 0.6 (the PyPI
source release) and Detectron2 main, torch releases, and lvis on current NumPy.

Both Detectron2s report ``__version__ == "0.6"``, so every difference is detected by feature, never
by version. This module is the single place that knows about them.
"""

import functools
import importlib
import inspect
import logging
import types

import numpy as np
import torch.distributed as dist
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def _compiled_ops_available() -> bool:
    """True when ``detectron2._C`` is the real compiled extension (not libra_d2's stand-in)."""
    try:
        _C = importlib.import_module("detectron2._C")
    except ImportError:
        return False
    return not getattr(_C, "IS_STANDIN", False)


#: Detectron2 was built with its C++/CUDA ops (rotated boxes, deformable conv, fast COCOeval, ...).
HAS_COMPILED_OPS = _compiled_ops_available()
#: ``COCOEvaluator(use_fast_impl=True)`` needs the compiled COCOeval.
HAS_FAST_COCOEVAL = HAS_COMPILED_OPS


def _event_storage_put_takes_iter() -> bool:
    from detectron2.utils.events import EventStorage

    return "cur_iter" in inspect.signature(EventStorage.put_scalar).parameters


#: ``EventStorage.put_scalar(..., cur_iter=)`` exists (main only): a value can be recorded for an
#: iteration other than the current one (``libra_d2.utils.events`` uses it for late values).
EVENT_STORAGE_PUT_TAKES_ITER = _event_storage_put_takes_iter()


def _default_trainer_checkpoints_optimizer() -> bool:
    from detectron2.engine import DefaultTrainer

    return "state_dict" in DefaultTrainer.__dict__


#: ``DefaultTrainer.state_dict()`` includes the inner loop's state (optimizer, grad scaler). Not in
#: 0.6, whose checkpoints therefore resume with fresh optimizer state (momentum lost).
DEFAULT_TRAINER_CHECKPOINTS_OPTIMIZER = _default_trainer_checkpoints_optimizer()


def _ddp_has_forward_sync_buffers() -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters


#: ``DistributedDataParallel(forward_sync_buffers=...)`` exists (torch >= 2.13), and
#: ``broadcast_buffers`` is deprecated there with a changed meaning (see :func:`create_ddp_model`).
DDP_HAS_FORWARD_SYNC_BUFFERS = _ddp_has_forward_sync_buffers()


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """Detectron2's ``create_ddp_model`` that also works for CPU modules and current torch.

    * Both Detectron2 versions pass ``device_ids=[local_rank]``, which DDP rejects for a module
      whose parameters are on the CPU; there ``device_ids`` must be None.
    * ``broadcast_buffers`` (Detectron2 passes ``False``: no buffer broadcast at each forward) is
      deprecated in current torch and warns at every start. Where torch has its replacement,
      ``broadcast_buffers=B`` is passed as ``forward_sync_buffers=B``. The one difference: with it,
      buffers (BatchNorm statistics and the methods' statistics) are broadcast from rank 0 once,
      when DDP is built. Every rank has initialised or loaded the same values by then, so this
      only guarantees what the methods already assume (checked during training by
      :class:`~libra_d2.engine.rank_consistency.RankConsistencyCheck`); per-forward behaviour is
      unchanged.
    """
    if comm.get_world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = next(model.parameters()).is_cuda
    kwargs.setdefault("device_ids", [comm.get_local_rank()] if on_cuda else None)
    if DDP_HAS_FORWARD_SYNC_BUFFERS and "broadcast_buffers" in kwargs:
        kwargs.setdefault("forward_sync_buffers", kwargs.pop("broadcast_buffers"))
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression and on_cuda:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Create the per-machine process group Detectron2's ``comm.get_local_rank()`` relies on."""
    if hasattr(comm, "create_local_process_group"):  # main
        comm.create_local_process_group(num_workers_per_machine)
        return
    # 0.6: the group is created inline by its launcher; do the same.
    world_size = dist.get_world_size()
    rank = dist.get_rank()
    num_machines = world_size // num_workers_per_machine
    for i in range(num_machines):
        ranks_on_i = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        pg = dist.new_group(ranks_on_i)
        if i == rank // num_workers_per_machine:
            comm._LOCAL_PROCESS_GROUP = pg


@functools.lru_cache(maxsize=None)
def _retinanet_head_builds_norm(norm: str) -> bool:
    """Whether Detectron2's ``RetinaNetHead`` can be built with ``MODEL.RETINANET.NORM = norm``.

    Detectron2 0.6 probes the norm's type with ``get_norm(norm, 1)``, which fails for "GN"
    (``GroupNorm(32, 1)``); main probes with 32 channels. Detected by building a 32-channel head.
    """
    import torch
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

    try:
        with torch.random.fork_rng(devices=[]):  # the probe's initialisation leaves no trace
            RetinaNetHead(
                input_shape=[ShapeSpec(channels=32)],
                num_classes=1,
                num_anchors=1,
                conv_dims=[32],
                norm=norm,
            )
    except ValueError:
        return False
    return True


def retinanet_head_norm(norm):
    """A ``norm`` argument for Detectron2's ``RetinaNetHead`` that builds on every version.

    Returns ``norm`` itself where the installed ``RetinaNetHead`` accepts it; otherwise (GroupNorm
    on Detectron2 0.6) a callable building exactly ``get_norm(norm, channels)`` for every layer,
    which answers the head's one-channel type probe with a 32-channel layer of the same type.
    """
    if (
        not isinstance(norm, str)
        or norm in ("", "BN", "SyncBN")
        or _retinanet_head_builds_norm(norm)
    ):
        return norm
    from detectron2.layers import get_norm

    def build(channels):
        return get_norm(norm, 32 if channels == 1 else channels)

    return build


def _torch_has_sdpa() -> bool:
    import torch.nn.functional as F

    return hasattr(F, "scaled_dot_product_attention")


#: ``torch.nn.functional.scaled_dot_product_attention`` exists (torch >= 2.0): the non-local
#: block's attention uses it.
HAS_SDPA = _torch_has_sdpa()


def _has_tracing_adapter() -> bool:
    try:
        from detectron2.export import TracingAdapter  # noqa: F401
    except ImportError:  # Detectron2 0.6's export package imports caffe2 (gone from torch)
        return False
    return True


#: Detectron2's export path (``detectron2.export.TracingAdapter``) imports here: Detectron2 main;
#: Detectron2 0.6's ``detectron2.export`` needs caffe2.
HAS_TRACING_ADAPTER = _has_tracing_adapter()


# lvis 0.5.3 (the newest release) uses ``np.float`` in ``LVISEval.accumulate``; NumPy >= 1.24
# removed that alias, so every LVIS evaluation (Detectron2's ``LVISEvaluator`` included, on any
# Detectron2 version) fails with AttributeError. Instead of touching NumPy globally, ``lvis.eval``
# gets its own view of NumPy in which the removed aliases mean what they always meant (builtins).
_REMOVED_ALIASES = {"float": float, "int": int, "bool": bool, "object": object, "str": str}


class _NumpyWithAliases(types.ModuleType):
    """A stand-in for the ``numpy`` module: attribute reads fall through to NumPy itself."""

    def __init__(self):
        super().__init__("numpy")
        self.__dict__.update(_REMOVED_ALIASES)

    def __getattr__(self, name):
        return getattr(np, name)


def patch_lvis_numpy_aliases() -> bool:
    """Give ``lvis.eval`` the removed NumPy aliases. Returns True if a patch was applied."""
    try:
        import lvis.eval as lvis_eval
    except ImportError:
        return False
    if all(hasattr(lvis_eval.np, k) for k in _REMOVED_ALIASES):
        return False  # old NumPy, or already patched
    lvis_eval.np = _NumpyWithAliases()
    return True


def feature_report():
    """Every feature probe of this module and its value here, by name (for logs and test headers:
    which Detectron2 / torch code paths this environment takes)."""
    return {k: v for k, v in sorted(globals().items()) if k.isupper() and isinstance(v, bool)}
