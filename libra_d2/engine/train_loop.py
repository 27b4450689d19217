"""The training step: Detectron2's SimpleTrainer (+ optional AMP) with the additions every
libra_d2 trainer needs.

* Hooks get ``after_backward()`` between ``backward()`` and ``optimizer.step()`` (gradients are
  unscaled first under AMP) on every Detectron2 version (0.6 has no such hook point). Gradient
  annealing and other gradient surgery live there.
* A loss that is not finite stops the run with an error that names the checkpoint ``--resume``
  will use (see :mod:`libra_d2.engine.divergence`).
* The statistics that the methods log during the step (``put_scalar_deferred``) are written at its
  end, so that logging adds no host synchronisation inside the step.
* The data-loader iterator is created on first use without touching the global RNG, so a resumed
  run can set its data position and RNG state before the first batch is drawn (exact resume).
"""

import contextlib
import random
import time

import numpy as np
import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..utils.events import flush_deferred_scalars
from .divergence import EXPLOSION_FACTOR, WINDOW, loss_explosion, stop_after_divergence

__all__ = [
    "AfterBackwardHooks",
    "LibraTrainLoop",
    "capture_rng_state",
    "restore_rng_state",
    "preserved_torch_rng",
]


def capture_rng_state():
    """Every RNG a training step may draw from, in a form ``torch.load(weights_only=True)``
    accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_torch_rng():
    """Run a block without advancing torch's global RNG (CPU and CUDA)."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class _DeferredIterable:
    """``iter()`` of this returns a generator: nothing runs until the first batch is requested."""

    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        # Creating a DataLoader iterator (here or inside Detectron2's aspect-ratio grouping) draws a
        # base seed from torch's global RNG. Keep that draw out of the global stream so that an
        # uninterrupted run and a resumed run see the same torch RNG at every step.
        with preserved_torch_rng():
            it = iter(self.iterable)
            first = next(it)
        yield first
        yield from it


class AfterBackwardHooks:
    """A trainer mixin: ``after_backward()`` runs the ``after_backward`` of every registered hook,
    in registration order, on every Detectron2 version (main's ``TrainerBase`` has the same
    method; 0.6 has none). It keeps its own list of those hooks from ``register_hooks``."""

    def register_hooks(self, hooks):
        hooks = [h for h in hooks if h is not None]
        super().register_hooks(hooks)
        self.after_backward_hooks = list(getattr(self, "after_backward_hooks", [])) + [
            h for h in hooks if callable(getattr(h, "after_backward", None))
        ]

    def after_backward(self):
        for h in getattr(self, "after_backward_hooks", []):
            h.after_backward()


class LibraTrainLoop(AfterBackwardHooks, SimpleTrainer):
    """``SimpleTrainer`` / ``AMPTrainer`` in one class, with ``after_backward`` hooks.

    Args:
        hook_owner: the trainer whose hooks get ``after_backward`` (the outer ``DefaultTrainer``,
            an :class:`AfterBackwardHooks`); default: this loop itself.
        amp: autocast the forward pass (fp16 + GradScaler on CUDA, bf16 on CPU).
    """

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        *,
        amp=False,
        hook_owner=None,
        loss_explosion_factor=EXPLOSION_FACTOR
    ):
        super().__init__(model, _DeferredIterable(data_loader), optimizer)
        #: a finite loss this many times the recent median stops the run like a NaN (None: off)
        self.loss_explosion_factor = loss_explosion_factor
        self.train_loader = data_loader  # the loader itself (self.data_loader is its deferred view)
        self.amp = amp
        self.hook_owner = hook_owner if hook_owner is not None else self
        #: the run's ``SafeCheckpointer``: on divergence it tags the checkpoint to resume from
        self.checkpointer = None
        self.device_type = "cuda" if next(model.parameters()).is_cuda else "cpu"
        self.grad_scaler = (
            torch.amp.GradScaler("cuda") if amp and self.device_type == "cuda" else None
        )

    def after_backward(self):
        if self.hook_owner is self:
            super().after_backward()
        else:
            self.hook_owner.after_backward()

    def run_step(self):
        try:
            self._train_step()
        except FloatingPointError as e:  # Detectron2's checks of the losses and the proposals
            raise stop_after_divergence(e, self.iter, get_event_storage(), self.checkpointer) from e

    def _train_step(self):
        assert self.model.training, "[LibraTrainLoop] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(self.device_type, enabled=self.amp):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses = loss_dict
                loss_dict = {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            self.grad_scaler.unscale_(self.optimizer)  # hooks and clipping see true gradients
        else:
            losses.backward()
        self.after_backward()

        self._write_metrics(loss_dict, data_time)
        self._check_loss_explosion()

        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        # The statistics the methods logged during the step (forward pass, gradient clipping),
        # read back at its end in one transfer: no stall inside the step.
        flush_deferred_scalars()

    def _check_loss_explosion(self):
        """Before the optimizer step, like Detectron2's NaN check: the total loss the main process
        has just logged (host values already: no device sync) against its recent median."""
        if not self.loss_explosion_factor or not comm.is_main_process():
            return
        storage = get_event_storage()
        if "total_loss" not in storage.histories():
            return
        recent = [v for v, _ in storage.history("total_loss").values()[-WINDOW - 1 :]]
        why = loss_explosion(recent, WINDOW, self.loss_explosion_factor)
        if why:
            raise FloatingPointError("Loss exploded at iteration {}: {}".format(self.iter, why))

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
