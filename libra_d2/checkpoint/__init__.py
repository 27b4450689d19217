from .safe_checkpointer import SafeCheckpointer, checkpoint_problem, non_finite_entries

__all__ = ["SafeCheckpointer", "checkpoint_problem", "non_finite_entries"]
