from .pretrained import TINY_BACKBONE_WEIGHTS, TINY_FROM_SCRATCH, pretrained_root, resolve_weights
from .safe_checkpointer import SafeCheckpointer, checkpoint_problem, non_finite_entries

__all__ = [
    "SafeCheckpointer",
    "TINY_BACKBONE_WEIGHTS",
    "TINY_FROM_SCRATCH",
    "checkpoint_problem",
    "non_finite_entries",
    "pretrained_root",
    "resolve_weights",
]
