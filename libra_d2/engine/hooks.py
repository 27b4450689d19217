"""Hooks of libra_d2's trainers."""

import sys

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.registry import Registry

from .train_loop import capture_rng_state, restore_rng_state

__all__ = ["ExactResume", "ProgressBar", "TRAINER_HOOK_REGISTRY", "build_method_hooks"]

TRAINER_HOOK_REGISTRY = Registry("TRAINER_HOOK")
TRAINER_HOOK_REGISTRY.__doc__ = """
Where methods add their hooks to :class:`~libra_d2.engine.LibraTrainer`: each entry is a function
``fn(trainer) -> HookBase | list[HookBase] | None`` that reads ``trainer.cfg`` and returns the
method's hook(s), or None when the method is off. Called once per trainer, in registration order.
"""


def build_method_hooks(trainer):
    """The hooks of every registered method that ``trainer.cfg`` turns on."""
    hooks = []
    for _, build in TRAINER_HOOK_REGISTRY:
        out = build(trainer)
        if out is None:
            continue
        hooks.extend(out if isinstance(out, (list, tuple)) else [out])
    return hooks


class ExactResume(HookBase):
    """Makes ``--resume`` continue a run as if it had never stopped.

    Model, optimizer, scheduler and iteration are restored by Detectron2's checkpointer; this hook
    adds what it leaves out: the RNG streams (saved with the checkpoint) and the position in the
    training data stream (derived from the iteration: the sampler skips the
    ``start_iter * images_per_process`` indices already consumed).

    Exact for a single process with ``DATALOADER.NUM_WORKERS = 0`` (tested). With workers, data
    order is exact but augmentation randomness inside workers is re-seeded; with several processes
    only rank 0's RNG streams are saved (the others are re-seeded from the iteration and their
    rank); with aspect-ratio grouping of images of both orientations, images buffered in a partly
    filled group at the time of the checkpoint are skipped.
    """

    def __init__(self, sampler, images_per_process: int):
        self._sampler = sampler
        self._images_per_process = images_per_process
        self._pending_rng = None

    def state_dict(self):
        return {"rng": capture_rng_state()}

    def load_state_dict(self, state_dict):
        self._pending_rng = state_dict.get("rng")

    def before_train(self):
        start_iter = self.trainer.start_iter
        if self._sampler is not None:
            self._sampler.start = start_iter * self._images_per_process
        if start_iter == 0:
            return
        if self._pending_rng is not None and comm.get_rank() == 0:
            restore_rng_state(self._pending_rng)
        else:
            torch.manual_seed(start_iter * 1000 + comm.get_rank())
        self._pending_rng = None


class ProgressBar(HookBase):
    """A progress bar (tqdm, main process, interactive terminals only: logs keep the periodic
    metric lines of Detectron2's ``CommonMetricPrinter``)."""

    def __init__(self, enabled=None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._enabled = enabled and comm.is_main_process()
        self._bar = None

    def before_train(self):
        if not self._enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            desc="train",
            dynamic_ncols=True,
            leave=True,
        )

    def after_step(self):
        if self._bar is None:
            return
        storage = self.trainer.storage
        if "total_loss" in storage.histories():
            self._bar.set_postfix(
                loss="%.3f" % storage.history("total_loss").latest(), refresh=False
            )
        self._bar.update(1)

    def after_train(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
