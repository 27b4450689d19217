"""Choose Detectron2 DatasetEvaluators from a dataset's ``evaluator_type`` metadata."""

import os

from detectron2.data import MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluators,
    LVISEvaluator,
    PascalVOCDetectionEvaluator,
)

from ..utils.compat import HAS_FAST_COCOEVAL, patch_lvis_numpy_aliases
from .per_class_ap import PerClassAPReport

SUPPORTED_EVALUATOR_TYPES = ("coco", "lvis", "pascal_voc")


def build_evaluator(cfg, dataset_name: str, output_folder: str = None):
    """Detectron2 evaluator(s) for ``dataset_name``, chosen by its ``evaluator_type`` metadata.

    COCO uses pycocotools' official COCOeval when the compiled fast COCOeval is absent; LVIS works
    on current NumPy and is followed by :class:`PerClassAPReport` (per-class AP against training
    frequency, in the output folder); Pascal VOC uses Detectron2's VOC07/12 AP evaluator.
    """
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type", None)
    if evaluator_type == "coco":
        evaluator = COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=HAS_FAST_COCOEVAL
        )
    elif evaluator_type == "lvis":
        patch_lvis_numpy_aliases()
        # per-class AP against training frequency (a plot and tables) after LVIS' own summary
        return DatasetEvaluators(
            [
                LVISEvaluator(dataset_name, output_dir=output_folder),
                PerClassAPReport(dataset_name, output_folder),
            ]
        )
    elif evaluator_type == "pascal_voc":
        evaluator = PascalVOCDetectionEvaluator(dataset_name)
    else:
        raise ValueError(
            "Dataset '{}' has evaluator_type={!r}; libra_d2 can build evaluators for {} "
            "(set MetadataCatalog.get({!r}).evaluator_type).".format(
                dataset_name, evaluator_type, ", ".join(SUPPORTED_EVALUATOR_TYPES), dataset_name
            )
        )
    return DatasetEvaluators([evaluator])
