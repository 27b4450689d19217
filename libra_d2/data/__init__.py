"""Datasets and data loading. Importing this registers LT-Shapes (lt_shapes_train, lt_shapes_val)
and its dense variant (lt_shapes_dense_train, lt_shapes_dense_val); Detectron2 itself registers
the COCO, LVIS and Pascal VOC builtins."""

from .build import build_resumable_train_loader, build_test_loader, resumable_train_loader
from .dataset_check import DatasetError, check_training_data
from .dataset_mapper import CheckedDatasetMapper, RecordError
from .datasets import register_lt_shapes
from .datasets.lt_shapes import VARIANTS
from .resumable_sampler import ResumableSampler

for _variant in VARIANTS:
    register_lt_shapes(variant=_variant)
del _variant

__all__ = [
    "CheckedDatasetMapper",
    "DatasetError",
    "RecordError",
    "ResumableSampler",
    "build_resumable_train_loader",
    "build_test_loader",
    "check_training_data",
    "register_lt_shapes",
    "resumable_train_loader",
]
