"""``LibraTrainer``: the DefaultTrainer every libra_d2 method trains with."""

import logging
import weakref

from detectron2.engine import DefaultTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import SafeCheckpointer
from ..data.build import build_resumable_train_loader, build_test_loader
from ..evaluation import build_evaluator
from ..modeling.freeze import freeze_from_cfg
from ..solver import build_optimizer_with_clipping
from ..utils.compat import DEFAULT_TRAINER_CHECKPOINTS_OPTIMIZER, create_ddp_model
from .hooks import ExactResume, ProgressBar, build_method_hooks
from .rank_consistency import RankConsistencyCheck
from .train_loop import AfterBackwardHooks, LibraTrainLoop, capture_rng_state, restore_rng_state

__all__ = ["LibraTrainer"]

logger = logging.getLogger(__name__)


class LibraTrainer(AfterBackwardHooks, DefaultTrainer):
    """Detectron2's ``DefaultTrainer`` with:

    * evaluators chosen from the dataset's ``evaluator_type`` (COCO, LVIS, Pascal VOC);
    * repeat-factor sampling through Detectron2's ``DATALOADER.SAMPLER_TRAIN``;
    * DDP on CPU (gloo) as well as GPU, and exact ``--resume`` (see :class:`ExactResume`);
    * a check that all ranks hold the same model (:class:`RankConsistencyCheck`);
    * checkpoints that survive kills and divergence (``libra_d2.checkpoint.SafeCheckpointer``);
    * ``after_backward`` hooks on every Detectron2 version (see :class:`LibraTrainLoop`);
    * evaluation that never disturbs the training RNG streams;
    * frozen modules for decoupled fine-tuning (``MODEL.LOCE.FINETUNE`` / ``FREEZE``).

    Methods add their hooks through :data:`~libra_d2.engine.hooks.TRAINER_HOOK_REGISTRY` (e.g. RGA).
    """

    def __init__(self, cfg):
        # Same steps as DefaultTrainer.__init__, with a DDP wrapper that accepts CPU modules and a
        # train loop that has after_backward hooks and a resumable data stream.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.cfg = cfg

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = LibraTrainLoop(
            model,
            data_loader,
            optimizer,
            amp=cfg.SOLVER.AMP.ENABLED,
            hook_owner=weakref.proxy(self),
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self._trainer.checkpointer = self.checkpointer
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """Detectron2's hooks, the methods' hooks (``TRAINER_HOOK_REGISTRY``) and, with several
        processes, the rank-consistency check right after the LR scheduler, exact resume before the
        checkpointer, a progress bar before the writers."""
        ret = super().build_hooks()
        lr_idx = next(i for i, h in enumerate(ret) if isinstance(h, hooks.LRScheduler))
        method_hooks = build_method_hooks(self)
        if comm.get_world_size() > 1:
            # At the same place on every rank (it is a collective; the checkpointer and writers
            # exist on rank 0 only), after the methods' updates and before rank 0 saves.
            method_hooks.append(RankConsistencyCheck(self.cfg.SOLVER.CHECKPOINT_PERIOD))
        ret[lr_idx + 1 : lr_idx + 1] = method_hooks
        images_per_process = self.cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
        # The resume hook must capture the RNG state before anything after it may draw from it.
        ckpt_idx = next(
            (i for i, h in enumerate(ret) if isinstance(h, hooks.PeriodicCheckpointer)), len(ret)
        )
        sampler = getattr(self._trainer.train_loader, "resumable_sampler", None)
        ret.insert(ckpt_idx, ExactResume(sampler, images_per_process))
        writer_idx = next(
            (i for i, h in enumerate(ret) if isinstance(h, hooks.PeriodicWriter)), len(ret)
        )
        ret.insert(writer_idx, ProgressBar())
        return ret

    if not DEFAULT_TRAINER_CHECKPOINTS_OPTIMIZER:
        # Detectron2 0.6 leaves the optimizer out of checkpoints; save and restore it the way
        # Detectron2 main does (same key), so checkpoints are interchangeable.
        def state_dict(self):
            ret = super().state_dict()
            ret["_trainer"] = self._trainer.state_dict()
            return ret

        def load_state_dict(self, state_dict):
            super().load_state_dict(state_dict)
            self._trainer.load_state_dict(state_dict["_trainer"])

    def resume_or_load(self, resume=True):
        """Detectron2's ``resume_or_load``; after a resume, the next step's learning rate is the
        schedule's of the current config, and a complete run gets a sound ``model_final.pth``.

        (The optimizer state in the checkpoint carries the rate that the old config set for that
        step: a run resumed after a divergence with a lower SOLVER.BASE_LR or other SOLVER.STEPS
        would take one step at the old rate. With an unchanged config the two are equal, and the
        resume stays exact.)"""
        super().resume_or_load(resume=resume)
        if resume and self.start_iter > 0:
            for group, lr in zip(self._trainer.optimizer.param_groups, self.scheduler.get_lr()):
                group["lr"] = lr
            if self.start_iter >= self.max_iter:  # nothing left to train: a sound final file
                self.checkpointer.ensure_final(self.start_iter - 1)

    @classmethod
    def build_model(cls, cfg):
        """Detectron2's model, with ``MODEL.LOCE.FREEZE`` frozen for a decoupled fine-tune
        (``MODEL.LOCE.FINETUNE``): before the optimizer and DDP see the parameters."""
        model = super().build_model(cfg)
        frozen = freeze_from_cfg(cfg, model)
        if frozen:
            logger.info(
                "Fine-tuning: froze %d parameter tensors under %s (BatchNorm in eval mode)",
                len(frozen),
                list(cfg.MODEL.LOCE.FREEZE),
            )
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's optimizer with ``SOLVER.CLIP_GRADIENTS`` applied by libra_d2's clipper: the
        same per-parameter types, plus ``"full_model"``, and the clip logged every step."""
        return build_optimizer_with_clipping(cfg, model, super().build_optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        """Detectron2's train loader whose sampler resumes exactly (``ExactResume``); a subclass
        may return any loader (exact resume then restarts the data stream)."""
        return build_resumable_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        # Evaluation draws from the global RNGs (data-loader seeds); keep training's streams intact.
        state = capture_rng_state()
        try:
            return super().test(cfg, model, evaluators)
        finally:
            restore_rng_state(state)
