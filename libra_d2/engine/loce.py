"""LOCE's training-side glue: the decoupled fine-tune checks and the feature memory of MFS.

Two ``@configurable`` hooks, one construction path each: YAML configs build them from
``MODEL.LOCE`` through ``from_config`` (:func:`build_loce_hooks`, in ``TRAINER_HOOK_REGISTRY``);
lazy configs list them in ``train.hooks`` as ``LazyCall`` objects, which
``projects/lazy_train_net.py`` instantiates (see
``configs/LT-Shapes/lazy/loce_faster_rcnn_R_18_FPN_tiny_stage2.py``).

* :class:`LOCEFineTune` (``MODEL.LOCE.FINETUNE``, any ROI heads): refuses to build a stage 2 that
  would start from scratch (a ``ConfigError`` when neither the weights nor a checkpoint to resume
  from exists) and resets the mean scores at the start of a fresh fine-tune. From a checkpoint
  without LOCE mean scores it says so (with the reset) or refuses (``RESET_SCORES_AT_START`` off
  keeps stage 1's scores). The freezing itself happens when the model is built
  (``libra_d2.modeling.freeze``: ``LibraTrainer.build_model`` for YAML, ``train.freeze`` in the
  lazy launcher), before the optimizer and DDP see the parameters.
* :class:`FeatureMemoryHook` (``MODEL.LOCE.MFS.ENABLED``): ``before_train`` allocates the
  :class:`~libra_d2.modeling.feature_memory.FeatureMemory`, attaches it to the ROI heads (which push
  16 jittered GT boxes per GT into it every step) and pre-fills it with a class-balanced pass over a
  few training images per class; ``before_step`` draws ``k`` classes with ``p ~ 1 / s`` and ``m``
  rows of each and hands them to ``roi_heads.set_memory_batch``.

The memory is per process (each process pre-fills its own) and is not saved in checkpoints (it is
several GB for LVIS): a resumed run re-fills it with the pre-fill pass.
"""

import copy
import logging
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
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
        raise ConfigError(
            "MODEL.LOCE needs MODEL.ROI_HEADS.NAME 'LOCEROIHeads', the model has {}".format(
                type(heads).__name__
            )
        )
    return heads


#: the options named in the error messages, (switch, weights, output dir), of YAML and lazy configs
YAML_OPTION_NAMES = ("MODEL.LOCE.FINETUNE", "MODEL.WEIGHTS", "OUTPUT_DIR")
LAZY_OPTION_NAMES = ("L(LOCEFineTune) in train.hooks", "train.init_checkpoint", "train.output_dir")


def _check_weights(weights, output_dir, option_names) -> None:
    if weights:
        return
    if output_dir and os.path.exists(os.path.join(output_dir, "last_checkpoint")):
        return
    switch, weights_key, dir_key = option_names
    raise ConfigError(
        "{} is stage 2 of LOCE's decoupled training: it fine-tunes a stage-1 "
        "model with the backbone frozen, but {} is empty and {} ({}) has no "
        "checkpoint to resume from. Train stage 1 first and pass {} "
        "<stage-1 {}>/model_final.pth".format(
            switch, weights_key, dir_key, output_dir, weights_key, dir_key
        )
    )


def check_finetune_weights(cfg) -> None:
    """ConfigError when a LOCE fine-tune would start from random weights: ``MODEL.WEIGHTS`` empty
    and no ``last_checkpoint`` in ``OUTPUT_DIR`` to resume from."""
    _check_weights(cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, YAML_OPTION_NAMES)


class LOCEFineTune(HookBase):
    """Stage-2 checks and the mean-score reset (see the module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        weights: str,
        output_dir: str,
        reset_scores: bool,
        option_names: Tuple[str, str, str] = LAZY_OPTION_NAMES
    ):
        """
        Args:
            weights: the stage-1 checkpoint the fine-tune starts from (``MODEL.WEIGHTS``,
                ``train.init_checkpoint``).
            output_dir: the run's output folder; a ``last_checkpoint`` there (a run to resume)
                stands in for empty ``weights``.
            reset_scores: reset the mean scores at the start of a fresh fine-tune.
            option_names: the config options that set (this hook, ``weights``, ``output_dir``),
                named in the errors.

        Raises ConfigError at construction when ``weights`` is empty and there is nothing to
        resume from."""
        _check_weights(weights, output_dir, option_names)
        self.weights = weights
        self.reset_scores = bool(reset_scores)
        self._option_names = tuple(option_names)

    @classmethod
    def from_config(cls, cfg):
        return {
            "weights": cfg.MODEL.WEIGHTS,
            "output_dir": cfg.OUTPUT_DIR,
            "reset_scores": cfg.MODEL.LOCE.RESET_SCORES_AT_START,
            "option_names": YAML_OPTION_NAMES,
        }

    def before_train(self):
        if self.trainer.start_iter > 0:
            return  # resumed: weights, optimizer and mean scores come from the checkpoint
        switch, weights_key, _ = self._option_names
        if not self.weights:
            raise ConfigError(
                "{} starts from iteration 0 with empty {} (was --resume forgotten?): pass the "
                "stage-1 model_final.pth as {}".format(switch, weights_key, weights_key)
            )
        heads = getattr(_unwrap(self.trainer.model), "roi_heads", None)
        if not isinstance(heads, LOCEROIHeads):
            return
        # the keys the trainer's checkpointer has just loaded, else a read of the file
        loaded = getattr(getattr(self.trainer, "checkpointer", None), "loaded_model_keys", None)
        has_scores = (
            MEAN_SCORE_KEY in loaded
            if loaded is not None
            else checkpoint_has_mean_scores(self.weights)
        )
        if self.reset_scores:
            heads.box_predictor.mean_score.reset()
            if has_scores is False:
                logger.info(
                    "LOCE stage 2: %s holds no LOCE mean scores (not a LOCE stage-1 "
                    "checkpoint); the fine-tune starts from fresh scores, as "
                    "RESET_SCORES_AT_START does for any checkpoint.",
                    self.weights,
                )
        elif has_scores is False:
            raise ConfigError(
                "{} with RESET_SCORES_AT_START off keeps the stage-1 mean scores, but {} = {} "
                "holds "
                "none (no '{}': not a LOCE stage-1 checkpoint). Pass a LOCE stage-1 "
                "model_final.pth, or reset the scores at the start.".format(
                    switch, weights_key, self.weights, MEAN_SCORE_KEY
                )
            )


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
        for c in {
            a["category_id"] for a in record.get("annotations", []) if not a.get("iscrowd", 0)
        }:
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
def prefill_feature_memory(
    model, records, mapper, batch_size: int = 8, log_every_s: float = 30.0
) -> int:
    """Run ``records`` (mapped by ``mapper``) through the backbone in eval mode and push every GT
    box's jittered copies into ``roi_heads.memory``. Returns the number of rows pushed."""
    m = _unwrap(model)
    heads = _loce_heads(m)
    was_training = m.training
    m.eval()  # no BatchNorm statistics change during the pass, whatever is frozen
    pushed, t0, last = 0, time.perf_counter(), time.perf_counter()
    try:
        for start in range(0, len(records), batch_size):
            batch = [mapper(copy.deepcopy(r)) for r in records[start : start + batch_size]]
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
                logger.info(
                    "LOCE memory pre-fill: %d/%d images, %d rows pushed, %d/%d classes "
                    "stored, %.0f s",
                    done,
                    len(records),
                    int(pushed),
                    int(heads.memory.available().sum()),
                    heads.memory.num_classes,
                    now - t0,
                )
    finally:
        m.train(was_training)
    return int(pushed)


class FeatureMemoryHook(HookBase):
    """MFS's memory: allocation + class-balanced pre-fill (``before_train``) and the per-step
    class / row sampling (``before_step``). See the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        dataset_names: Sequence[str],
        mapper,
        queue_size: int,
        num_classes_per_step: int,
        samples_per_class: int,
        device: str,
        dtype: str,
        prefill_images_per_class: int,
        prefill_batch_size: int
    ):
        """
        Args:
            dataset_names: the training datasets the pre-fill draws its images from.
            mapper: a training mapper (dataset dict -> model input) for the pre-fill.
            queue_size: rows stored per class.
            num_classes_per_step, samples_per_class: ``k`` classes drawn per step, ``m`` rows of
                each.
            device, dtype: where and how the memory is stored ("" device: the model's).
            prefill_images_per_class: images per class of the pre-fill (0: none).
            prefill_batch_size: images per forward pass of the pre-fill.
        """
        self.dataset_names = (
            [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
        )
        self.mapper = mapper
        self.queue_size = int(queue_size)
        self.k = int(num_classes_per_step)
        self.m = int(samples_per_class)
        self.device = device
        self.dtype = dtype
        self.prefill_images_per_class = int(prefill_images_per_class)
        self.prefill_batch_size = int(prefill_batch_size)
        self.memory: Optional[FeatureMemory] = None

    @classmethod
    def from_config(cls, cfg):
        mfs = cfg.MODEL.LOCE.MFS
        return {
            "dataset_names": list(cfg.DATASETS.TRAIN),
            "mapper": CheckedDatasetMapper(cfg, is_train=True),
            "queue_size": mfs.QUEUE_SIZE,
            "num_classes_per_step": mfs.NUM_CLASSES,
            "samples_per_class": mfs.SAMPLES_PER_CLASS,
            "device": mfs.DEVICE,
            "dtype": mfs.DTYPE,
            "prefill_images_per_class": mfs.PREFILL_IMAGES_PER_CLASS,
            "prefill_batch_size": mfs.PREFILL_BATCH_SIZE,
        }

    def _model_device(self):
        return next(_unwrap(self.trainer.model).parameters()).device

    def before_train(self):
        model = _unwrap(self.trainer.model)
        heads = _loce_heads(model)
        if any(p.requires_grad for p in getattr(model, "backbone", nn.Module()).parameters()):
            logger.warning(
                "LOCE MFS with a backbone that trains (not frozen for the fine-tune): "
                "stored features go stale as the backbone changes"
            )
        device = self.device or self._model_device()
        self.memory = FeatureMemory(
            heads.num_classes,
            queue_size=self.queue_size,
            feature_shape=heads.memory_feature_shape,
            device=device,
            dtype=self.dtype,
        )
        heads.attach_memory(self.memory)
        logger.info(
            "LOCE feature memory: %s (%.1f MB per process; not checkpointed, re-filled on "
            "resume)",
            self.memory,
            self.memory.nbytes() / 2**20,
        )
        if self.prefill_images_per_class > 0:
            self.prefill()

    def prefill(self) -> int:
        dicts = get_detection_dataset_dicts(self.dataset_names, filter_empty=True)
        idx = class_balanced_image_indices(
            dicts, self.memory.num_classes, self.prefill_images_per_class, seed=comm.get_rank()
        )
        logger.info(
            "LOCE memory pre-fill: %d images (up to %d per class) ...",
            len(idx),
            self.prefill_images_per_class,
        )
        return prefill_feature_memory(
            self.trainer.model,
            [dicts[i] for i in idx],
            self.mapper,
            batch_size=self.prefill_batch_size,
        )

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
        hooks.append(LOCEFineTune(cfg))
    if loce.MFS.ENABLED:
        if cfg.MODEL.ROI_HEADS.NAME != "LOCEROIHeads":
            raise ConfigError(
                "MODEL.LOCE.MFS needs MODEL.ROI_HEADS.NAME 'LOCEROIHeads', got {!r}".format(
                    cfg.MODEL.ROI_HEADS.NAME
                )
            )
        hooks.append(FeatureMemoryHook(cfg))
    return hooks or None
