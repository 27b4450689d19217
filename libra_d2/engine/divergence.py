"""Which checkpoint a run resumes from after its loss diverged.

Detectron2 stops training with ``FloatingPointError`` at the first step whose loss is NaN or
infinite. The checkpoints written shortly before that can be finite but already ruined (weights of
1e7 after a gradient explosion), and resuming from one fails again at once. A checkpoint written
after step ``s`` is trusted when the step after it, which trained from exactly its weights, ended
with a finite loss no more than ``factor`` times the median loss of the ``window`` steps up to ``s``
(ruined weights give a loss that explodes at once; a later blow-up happened after the checkpoint).

The newest trusted checkpoint is tagged in ``last_checkpoint``, the newer ones are set aside as
``<name>.pth.untrusted`` (kept for inspection, never resumed from), and the error names the
checkpoint. Defaults: :data:`WINDOW` (Detectron2's logging window) and :data:`FACTOR`.
"""
import math
import statistics
from typing import Dict, Optional

__all__ = ["untrusted_after_divergence", "WINDOW", "FACTOR"]

WINDOW = 20
FACTOR = 10.0


def untrusted_after_divergence(
    losses: Dict[int, float], saved_iter: Optional[int], diverged_iter: int,
    window: int = WINDOW, factor: float = FACTOR,
) -> Optional[str]:
    """Why the checkpoint written after step ``saved_iter`` is not trusted for a resume after a
    divergence detected at step ``diverged_iter``; None when it is trusted.

    Args:
        losses: total loss per finished step (``EventStorage`` history ``total_loss``).
    """
    if saved_iter is None:
        return "stores no iteration"
    if saved_iter >= diverged_iter:
        return "was written at or after the divergence (step {})".format(diverged_iter)
    nxt = saved_iter + 1
    if nxt >= diverged_iter or nxt not in losses:
        return "no step finished with its weights before the divergence at step {}".format(
            diverged_iter)
    value = losses[nxt]
    if not math.isfinite(value):
        return "the loss with its weights (step {}) was {}".format(nxt, value)
    before = [v for t, v in sorted(losses.items()) if t <= saved_iter and math.isfinite(v)]
    if before:
        reference = statistics.median(before[-window:])
        if value > factor * reference:
            return "the loss with its weights (step {}) was {:.4g}, over {:g}x the median {:.4g} " \
                   "of the {} steps before".format(nxt, value, factor, reference,
                                                   len(before[-window:]))
    return None


def stop_after_divergence(error: FloatingPointError, iteration: int, storage, checkpointer):
    """The ``FloatingPointError`` a run stops with at ``iteration``: Detectron2's message, plus the
    checkpoint that ``--resume`` will use, which ``checkpointer`` (a ``SafeCheckpointer``) tags."""
    losses = {}
    if "total_loss" in storage.histories():
        losses = {it: v for v, it in storage.history("total_loss").values()}
    chosen = None
    if checkpointer is not None and checkpointer.save_to_disk:
        chosen = checkpointer.prepare_resume_after_divergence(
            lambda saved: untrusted_after_divergence(losses, saved, iteration))
    if chosen:
        then = "`--resume` will continue from {} (tagged in last_checkpoint)".format(chosen)
    else:
        then = "no checkpoint from before it can be trusted: `--resume` will start again from " \
               "MODEL.WEIGHTS"
    return FloatingPointError(
        "{}\nTraining diverged at iteration {}; {}. Fix the cause first (e.g. a lower "
        "SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS, SOLVER.CLIP_GRADIENTS).".format(
            error, iteration, then))
