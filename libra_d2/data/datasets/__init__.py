"""Datasets libra_d2 adds to Detectron2's builtins: LT-Shapes (categories, planner, drawing,
generator, loading and registration, one module each)."""

from .lt_shapes import register_lt_shapes

__all__ = ["register_lt_shapes"]
