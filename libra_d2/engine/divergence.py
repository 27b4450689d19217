"""Which checkpoint a run resumes from after its loss diverged.

Detectron2 stops training with ``FloatingPointError`` at the first step whose loss is NaN or
infinite. The checkpoints written shortly before that can be finite but already ruined (weights of
1e7 after a gradient explosion), and resuming from one fails again at once. A checkpoint written
after step ``s`` is trusted when the step after it, which trained from exactly its weights, ended
with a finite loss no more than ``factor`` times the median loss of the ``window`` steps up to ``s``
(ruined weights give a loss that explodes at once; a later blow-up happened after the checkpoint).

A loss can also explode and stay finite (observed: 1.3 -> 2.6e28 in 20 steps, with a model that
then detects nothing), which Detectron2's check lets through to the end of the run:
:func:`loss_explosion` stops such a run the same way, at the first step whose loss is over
:data:`EXPLOSION_FACTOR` times the median of the ``window`` steps before it.

The newest trusted checkpoint is tagged in ``last_checkpoint``, the newer ones are set aside as
``<name>.pth.untrusted`` (kept for inspection, never resumed from), and the error names the
checkpoint. Defaults: :data:`WINDOW` (Detectron2's logging window), :data:`FACTOR` and
:data:`EXPLOSION_FACTOR`.
"""

import math
import statistics
from typing import Dict, Optional

__all__ = ["untrusted_after_divergence", "loss_explosion", "WINDOW", "FACTOR", "EXPLOSION_FACTOR"]

WINDOW = 20
FACTOR = 10.0
#: a step's loss this many times the recent median stops the run (no sound run jumps 10^4x)
EXPLOSION_FACTOR = 1e4


def _over_recent_median(value: float, before, window: int, factor: float) -> Optional[float]:
    """The median of the last ``window`` of ``before`` (a non-empty list) when ``value`` is over
    ``factor`` times it, else None: the one jump rule of both checks below."""
    reference = statistics.median(before[-window:])
    return reference if value > factor * reference else None


def loss_explosion(losses, window: int = WINDOW, factor: float = EXPLOSION_FACTOR) -> Optional[str]:
    """Why the last of ``losses`` (finite values, oldest first) is an explosion: over ``factor``
    times the median of the ``window`` values before it; None when it is not, or when fewer than
    ``window`` values precede it."""
    if len(losses) <= window:
        return None
    reference = _over_recent_median(losses[-1], losses[:-1], window, factor)
    if reference is not None:
        return "the loss {:.4g} is over {:g}x the median {:.4g} of the {} steps before".format(
            losses[-1], factor, reference, window
        )
    return None


def untrusted_after_divergence(
    losses: Dict[int, float],
    saved_iter: Optional[int],
    diverged_iter: int,
    window: int = WINDOW,
    factor: float = FACTOR,
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
            diverged_iter
        )
    value = losses[nxt]
    if not math.isfinite(value):
        return "the loss with its weights (step {}) was {}".format(nxt, value)
    before = [v for t, v in sorted(losses.items()) if t <= saved_iter and math.isfinite(v)]
    reference = _over_recent_median(value, before, window, factor) if before else None
    if reference is not None:
        return (
            "the loss with its weights (step {}) was {:.4g}, over {:g}x the median {:.4g} "
            "of the {} steps before".format(nxt, value, factor, reference, len(before[-window:]))
        )
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
            lambda saved: untrusted_after_divergence(losses, saved, iteration)
        )
    if chosen:
        then = "`--resume` will continue from {} (tagged in last_checkpoint)".format(chosen)
    else:
        then = (
            "no checkpoint from before it can be trusted: `--resume` will start again from "
            "MODEL.WEIGHTS"
        )
    return FloatingPointError(
        "{}\nTraining diverged at iteration {}; {}. Fix the cause first (e.g. a lower "
        "SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS, SOLVER.CLIP_GRADIENTS).".format(
            error, iteration, then
        )
    )
