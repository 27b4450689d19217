"""LOCE's training-side glue: the decoupled fine-tune checks and the feature memory of MFS.

Hooks (added to :class:`~libra_d2.engine.LibraTrainer` through ``TRAINER_HOOK_REGISTRY``):

* :class:`LOCEFineTune` (``MODEL.LOCE.FINETUNE``, any ROI heads): refuses to start stage 2 from scratch (a
  ``ConfigError`` when neither ``MODEL.WEIGHTS`` nor a checkpoint to resume from exists) and resets
  the mean scores at the start of a fresh fine-tune. From a checkpoint without LOCE mean scores
  it says so (with the reset) or refuses (``RESET_SCORES_AT_START`` off keeps stage 1's scores).
  The freezing itself happens when the model is built
  (``libra_d2.modeling.freeze.freeze_from_cfg`` in ``LibraTrainer.build_model``), before the
  optimizer and DDP see the parameters.
* :class:`FeatureMemoryHook` (``MODEL.LOCE.MFS.ENABLED``): ``before_train`` allocates the
  :class:`~libra_d2.modeling.feature_memory.FeatureMemory`, attaches it to the ROI heads (which push
  16 jittered GT boxes per GT into it every step) and pre-fills it with a class-balanced pass over a
  few training images per class; ``before_step`` draws ``k`` classes with ``p ~ 1 / s`` and ``m``
  rows of each and hands them to ``roi_heads.set_memory_batch``.

Lazy configs (``projects/lazy_train_net.py``): ``train.loce`` holds the same options in lower case;
:func:`loce_freeze_from_train_cfg` freezes before the optimizer, :func:`loce_hooks_from_train_cfg`
builds the two hooks (their ``dataset_names`` / ``mapper`` replace the YAML cfg).

The memory is per process (each process pre-fills its own) and is not saved in checkpoints (it is
several GB for LVIS): a resumed run re-fills it with the pre-fill pass.
"""
import copy
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import get_detection_dataset_dicts
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn

from ..data import CheckedDatasetMapper
from ..modeling.feature_memory import FeatureMemory, sample_memory_classes
from ..modeling.roi_heads.loce_roi_heads import LOCEROIHeads, MemoryBatch
from .hooks import TRAINER_HOOK_REGISTRY
from .setup import ConfigError

__all__ = [
    "FeatureMemoryHook",
    "LOCEFineTune",
    "build_loce_hooks",
    "check_finetune_weights",
    "class_balanced_image_indices",
    "loce_freeze_from_train_cfg",
    "loce_hooks_from_train_cfg",
    "prefill_feature_memory",
]

logger = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _loce_heads(model: nn.Module) -> LOCEROIHeads:
    heads = getattr(_unwrap(model), "roi_heads", None)
    if not isinstance(heads, LOCEROIHeads):
        raise ConfigError("MODEL.LOCE needs MODEL.ROI_HEADS.NAME 'LOCEROIHeads', the model has {}"
                          .format(type(heads).__name__))
    return heads


# names of the options in the error messages: (switch, weights, output dir)
_YAML_KEYS = ("MODEL.LOCE.FINETUNE", "MODEL.WEIGHTS", "OUTPUT_DIR")
_LAZY_KEYS = ("train.loce.finetune", "train.init_checkpoint", "train.output_dir")


def _check_weights(weights, output_dir, keys) -> None:
    if weights:
        return
    if os.path.exists(os.path.join(output_dir, "last_checkpoint")):
        return
    switch, weights_key, dir_key = keys
    raise ConfigError(
        "{} is stage 2 of LOCE's decoupled training: it fine-tunes a stage-1 "
        "model with the backbone frozen, but {} is empty and {} ({}) has no "
        "checkpoint to resume from. Train stage 1 first and pass {} "
        "<stage-1 {}>/model_final.pth".format(switch, weights_key, dir_key, output_dir,
                                              weights_key, dir_key))


def check_finetune_weights(cfg) -> None:
    """ConfigError when a LOCE fine-tune would start from random weights: ``MODEL.WEIGHTS`` empty
    and no ``last_checkpoint`` in ``OUTPUT_DIR`` to resume from."""
    _check_weights(cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, _YAML_KEYS)


class LOCEFineTune(HookBase):
    """Stage-2 checks and the mean-score reset (see the module docstring).

    ``cfg``: a YAML config (its ``MODEL.WEIGHTS``); lazy configs pass ``weights`` (their
    ``train.init_checkpoint``) instead, with ``cfg`` None."""

    def __init__(self, cfg=None, reset_scores: bool = True, *, weights: Optional[str] = None):
        if cfg is None and weights is None:
            raise ValueError("LOCEFineTune needs a cfg or weights")
        self.cfg = cfg
        self.weights = cfg.MODEL.WEIGHTS if cfg is not None else weights
        self._keys = _YAML_KEYS if cfg is not None else _LAZY_KEYS
        self.reset_scores = bool(reset_scores)

    def before_train(self):
        if self.trainer.start_iter > 0:
            return  # resumed: weights, optimizer and mean scores come from the checkpoint
        if not self.weights:
            switch, weights_key, _ = self._keys
            raise ConfigError(
                "{} starts from iteration 0 with empty {} (was --resume forgotten?): pass the "
                "stage-1 model_final.pth as {}".format(switch, weights_key, weights_key))
        heads = getattr(_unwrap(self.trainer.model), "roi_heads", None)
        if not isinstance(heads, LOCEROIHeads):
            return
        has_scores = checkpoint_has_mean_scores(self.weights)
        if self.reset_scores:
            heads.box_predictor.mean_score.reset()
            if has_scores is False:
                logger.info("LOCE stage 2: %s holds no LOCE mean scores (not a LOCE stage-1 "
                            "checkpoint); the fine-tune starts from fresh scores, as "
                            "RESET_SCORES_AT_START does for any checkpoint.", self.weights)
        elif has_scores is False:
            switch, weights_key, _ = self._keys
            raise ConfigError(
                "{} with RESET_SCORES_AT_START off keeps the stage-1 mean scores, but {} = {} holds "
                "none (no '{}': not a LOCE stage-1 checkpoint). Pass a LOCE stage-1 "
                "model_final.pth, or reset the scores at the start.".format(
                    switch, weights_key, self.weights, MEAN_SCORE_KEY))


#: The state-dict key of the mean scores ``s`` of a LOCE model.
MEAN_SCORE_KEY = "roi_heads.box_predictor.mean_score.score"


def checkpoint_has_mean_scores(path: str) -> Optional[bool]:
    """Whether the local checkpoint ``path`` holds LOCE mean scores; None when it cannot tell (a
    URL, a model-zoo name, a Caffe2 .pkl)."""
    if not path or not os.path.isfile(path) or not path.endswith(".pth"):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # the checkpointer reports unreadable files itself
    model = state.get("model", state) if isinstance(state, dict) else {}
    return MEAN_SCORE_KEY in model


def class_balanced_image_indices(
    dataset_dicts: Sequence[Dict], num_classes: int, images_per_class: int, seed: int = 0
) -> List[int]:
    """Indices of up to ``images_per_class`` records containing each class (drawn without
    replacement, rarest classes first), each record at most once; sorted."""
    per_class: List[List[int]] = [[] for _ in range(num_classes)]
    for i, record in enumerate(dataset_dicts):
        for c in {a["category_id"] for a in record.get("annotations", []) if not a.get("iscrowd", 0)}:
            if 0 <= c < num_classes:
                per_class[c].append(i)
    rng = np.random.RandomState(seed)
    chosen = set()
    for c in sorted(range(num_classes), key=lambda c: len(per_class[c])):
        candidates = [i for i in per_class[c] if i not in chosen]
        have = sum(1 for i in per_class[c] if i in chosen)
        need = max(images_per_class - have, 0)
        if need and candidates:
            take = rng.choice(len(candidates), size=min(need, len(candidates)), replace=False)
            chosen.update(candidates[j] for j in take)
    return sorted(chosen)


@torch.no_grad()
def prefill_feature_memory(model, records, mapper, batch_size: int = 8, log_every_s: float = 30.0) -> int:
    """Run ``records`` (mapped by ``mapper``) through the backbone in eval mode and push every GT
    box's jittered copies into ``roi_heads.memory``. Returns the number of rows pushed."""
    m = _unwrap(model)
    heads = _loce_heads(m)
    was_training = m.training
    m.eval()  # no BatchNorm statistics change during the pass, whatever is frozen
    pushed, t0, last = 0, time.perf_counter(), time.perf_counter()
    try:
        for start in range(0, len(records), batch_size):
            batch = [mapper(copy.deepcopy(r)) for r in records[start:start + batch_size]]
            batch = [b for b in batch if b is not None and "instances" in b]
            if not batch:
                continue
            images = m.preprocess_image(batch)
            features = m.backbone(images.tensor)
            targets = [b["instances"].to(images.tensor.device) for b in batch]
            pushed += heads.push_to_memory(features, targets)
            now = time.perf_counter()
            done = min(start + batch_size, len(records))
            if now - last >= log_every_s or done == len(records):
                last = now
                logger.info("LOCE memory pre-fill: %d/%d images, %d rows pushed, %d/%d classes "
                            "stored, %.0f s", done, len(records), int(pushed),
                            int(heads.memory.available().sum()), heads.memory.num_classes, now - t0)
    finally:
        m.train(was_training)
    return int(pushed)


class FeatureMemoryHook(HookBase):
    """MFS's memory: allocation + class-balanced pre-fill (``before_train``) and the per-step
    class / row sampling (``before_step``). See the module docstring."""

    def __init__(self, cfg=None, queue_size=80, num_classes_per_step=8, samples_per_class=4,
                 device="cpu", dtype="float32", prefill_images_per_class=5, prefill_batch_size=8,
                 *, dataset_names: Optional[Sequence[str]] = None, mapper=None):
        """``cfg``: a YAML config, for the pre-fill's images (``DATASETS.TRAIN``) and mapper
        (``CheckedDatasetMapper(cfg, is_train=True)``). Without one (lazy configs), pass
        ``dataset_names`` and ``mapper`` (a training mapper, e.g. the train loader's); either
        overrides the cfg's."""
        if cfg is None and (dataset_names is None or mapper is None):
            if int(prefill_images_per_class) > 0:
                raise ValueError("FeatureMemoryHook needs a cfg, or dataset_names and a mapper")
        self.cfg = cfg
        if dataset_names is None and cfg is not None:
            dataset_names = cfg.DATASETS.TRAIN
        if isinstance(dataset_names, str):
            dataset_names = [dataset_names]
        self.dataset_names = list(dataset_names) if dataset_names is not None else None
        self.mapper = mapper
        self.queue_size = int(queue_size)
        self.k = int(num_classes_per_step)
        self.m = int(samples_per_class)
        self.device = device
        self.dtype = dtype
        self.prefill_images_per_class = int(prefill_images_per_class)
        self.prefill_batch_size = int(prefill_batch_size)
        self.memory: Optional[FeatureMemory] = None

    def _model_device(self):
        return next(_unwrap(self.trainer.model).parameters()).device

    def before_train(self):
        heads = _loce_heads(self.trainer.model)
        device = self.device or self._model_device()
        self.memory = FeatureMemory(
            heads.num_classes, queue_size=self.queue_size,
            feature_shape=heads.memory_feature_shape, device=device, dtype=self.dtype,
        )
        heads.attach_memory(self.memory)
        logger.info("LOCE feature memory: %s (%.1f MB per process; not checkpointed, re-filled on "
                    "resume)", self.memory, self.memory.nbytes() / 2**20)
        if self.prefill_images_per_class > 0:
            self.prefill()

    def prefill(self) -> int:
        dicts = get_detection_dataset_dicts(self.dataset_names, filter_empty=True)
        idx = class_balanced_image_indices(dicts, self.memory.num_classes,
                                           self.prefill_images_per_class, seed=comm.get_rank())
        logger.info("LOCE memory pre-fill: %d images (up to %d per class) ...", len(idx),
                    self.prefill_images_per_class)
        mapper = self.mapper
        if mapper is None:
            mapper = CheckedDatasetMapper(self.cfg, is_train=True)
        return prefill_feature_memory(self.trainer.model, [dicts[i] for i in idx], mapper,
                                      batch_size=self.prefill_batch_size)

    def sample_batch(self) -> MemoryBatch:
        heads = _loce_heads(self.trainer.model)
        scores = heads.box_predictor.mean_score.score[:-1]
        classes = sample_memory_classes(scores, self.k, available=self.memory.available())
        feats, targets, labels = self.memory.sample(classes, self.m, device=self._model_device())
        return MemoryBatch(feats, targets, labels)

    def before_step(self):
        batch = self.sample_batch()
        _loce_heads(self.trainer.model).set_memory_batch(batch)
        self.trainer.storage.put_scalar("loce/memory_rows", batch.num_rows, smoothing_hint=False)

    def after_train(self):
        _loce_heads(self.trainer.model).set_memory_batch(None)


@TRAINER_HOOK_REGISTRY.register()
def build_loce_hooks(trainer):
    """``MODEL.LOCE`` -> [LOCEFineTune] and/or [FeatureMemoryHook], or None when both are off."""
    cfg = trainer.cfg
    if "LOCE" not in cfg.MODEL:
        return None
    loce = cfg.MODEL.LOCE
    hooks = []
    if loce.FINETUNE:
        check_finetune_weights(cfg)
        hooks.append(LOCEFineTune(cfg, reset_scores=loce.RESET_SCORES_AT_START))
    if loce.MFS.ENABLED:
        if cfg.MODEL.ROI_HEADS.NAME != "LOCEROIHeads":
            raise ConfigError("MODEL.LOCE.MFS needs MODEL.ROI_HEADS.NAME 'LOCEROIHeads', got {!r}"
                              .format(cfg.MODEL.ROI_HEADS.NAME))
        if not loce.FINETUNE or "backbone" not in list(loce.FREEZE):
            logger.warning("LOCE MFS without a frozen backbone (MODEL.LOCE.FINETUNE / FREEZE): "
                           "stored features go stale as the backbone trains")
        mfs = loce.MFS
        hooks.append(FeatureMemoryHook(
            cfg, queue_size=mfs.QUEUE_SIZE, num_classes_per_step=mfs.NUM_CLASSES,
            samples_per_class=mfs.SAMPLES_PER_CLASS, device=mfs.DEVICE, dtype=mfs.DTYPE,
            prefill_images_per_class=mfs.PREFILL_IMAGES_PER_CLASS,
            prefill_batch_size=mfs.PREFILL_BATCH_SIZE,
        ))
    return hooks or None


def _get(node, key, default=None):
    return node.get(key, default) if hasattr(node, "get") else default


def _loce_train_cfg(train_cfg):
    loce = _get(train_cfg, "loce", None)
    return loce if loce else None


def loce_freeze_from_train_cfg(train_cfg, model: nn.Module) -> List[str]:
    """For lazy configs, before the optimizer and DDP: with ``train.loce.finetune``, checks that
    stage 2 has weights to start from (``train.init_checkpoint`` or a checkpoint in
    ``train.output_dir``; else a ConfigError) and freezes ``train.loce.freeze`` (default: the
    backbone and the shared box FCs). Returns the frozen parameter names ([] when off)."""
    from ..modeling.freeze import freeze_modules

    loce = _loce_train_cfg(train_cfg)
    if loce is None or not _get(loce, "finetune", False):
        return []
    _check_weights(_get(train_cfg, "init_checkpoint", ""), _get(train_cfg, "output_dir", "."),
                   _LAZY_KEYS)
    frozen = freeze_modules(model, list(_get(loce, "freeze", ["backbone", "roi_heads.box_head"])))
    logger.info("LOCE fine-tune: %d parameters frozen", len(frozen))
    return frozen


def loce_hooks_from_train_cfg(train_cfg, dataset_names: Sequence[str], mapper) -> List[HookBase]:
    """For lazy configs: the hooks described by ``train.loce`` (the twin of ``MODEL.LOCE``'s
    trainer options, keys in lower case), [] when it is absent::

        train.loce = dict(finetune=True, freeze=["backbone", "roi_heads.box_head"],
                          reset_scores_at_start=True,
                          mfs=dict(enabled=True, queue_size=80, num_classes=8, samples_per_class=4,
                                   device="", dtype="float32", prefill_images_per_class=5,
                                   prefill_batch_size=8))

    ``dataset_names`` and ``mapper``: the training datasets and a training mapper, for MFS's
    pre-fill. The freezing itself is :func:`loce_freeze_from_train_cfg` (before the optimizer)."""
    loce = _loce_train_cfg(train_cfg)
    if loce is None:
        return []
    hooks: List[HookBase] = []
    finetune = bool(_get(loce, "finetune", False))
    if finetune:
        _check_weights(_get(train_cfg, "init_checkpoint", ""), _get(train_cfg, "output_dir", "."),
                       _LAZY_KEYS)
        hooks.append(LOCEFineTune(weights=_get(train_cfg, "init_checkpoint", ""),
                                  reset_scores=_get(loce, "reset_scores_at_start", True)))
    mfs = _get(loce, "mfs", None)
    if mfs and _get(mfs, "enabled", False):
        if not finetune or "backbone" not in list(_get(loce, "freeze", ["backbone"])):
            logger.warning("LOCE MFS without a frozen backbone (train.loce.finetune / freeze): "
                           "stored features go stale as the backbone trains")
        hooks.append(FeatureMemoryHook(
            None, queue_size=_get(mfs, "queue_size", 80),
            num_classes_per_step=_get(mfs, "num_classes", 8),
            samples_per_class=_get(mfs, "samples_per_class", 4), device=_get(mfs, "device", "cpu"),
            dtype=_get(mfs, "dtype", "float32"),
            prefill_images_per_class=_get(mfs, "prefill_images_per_class", 5),
            prefill_batch_size=_get(mfs, "prefill_batch_size", 8),
            dataset_names=dataset_names, mapper=mapper,
        ))
    return hooks
