"""Per-class AP against training frequency, after Detectron2's ``LVISEvaluator``.

:class:`PerClassAPReport` runs after ``LVISEvaluator`` in the same ``DatasetEvaluators`` and
output folder. It reads the detections that ``LVISEvaluator`` wrote there
(``lvis_instances_results.json``), evaluates them again with the ``lvis`` package's ``LVISEval``,
the official code, and writes three files:

* ``per_class_ap.json``: every category's box AP, its training image count and frequency group;
* ``per_group_ap.md``: per group (r / c / f), the number of categories, their mean AP and the
  range of their training image counts;
* ``per_class_ap.png``: per-class AP against training image count (log scale), coloured by group,
  with each group's mean AP.

A category's AP is LVIS's: the mean of its precision over the IoU thresholds 0.5:0.95 and the
recall points, all areas; categories without a valid precision (no ground truth among the
evaluated images) are left out. The training image counts are the ground truth's
``image_count`` (LVIS; the LVIS-format copy of a ``--dataset`` test set carries the training
split's). The second evaluation costs as much as the first.
"""

import json
import logging
import os
from typing import Dict, List

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..utils.compat import patch_lvis_numpy_aliases

__all__ = ["PerClassAPReport", "per_class_ap", "per_group_table"]

logger = logging.getLogger(__name__)
GROUPS = ("r", "c", "f")
RESULTS_FILE = "lvis_instances_results.json"  # what Detectron2's LVISEvaluator writes


def per_class_ap(precision: np.ndarray) -> np.ndarray:
    """LVIS ``precision`` ``(T, R, K, A)`` (or ``(T, R, K)``) -> ``(K,)`` AP of every category
    (area index 0: all), NaN where no entry is valid (-1)."""
    p = np.asarray(precision, dtype=np.float64)
    if p.ndim == 4:
        p = p[:, :, :, 0]
    p = p.reshape(-1, p.shape[2])
    valid = p > -1
    sums = np.where(valid, p, 0.0).sum(axis=0)
    counts = valid.sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def per_group_table(rows: List[Dict]) -> str:
    """Markdown: per frequency group, the categories evaluated, their mean AP and the range of
    their training image counts."""
    lines = [
        "| group | categories | mean AP | training images per category |",
        "|---|---|---|---|",
    ]
    for g in GROUPS:
        members = [r for r in rows if r["frequency"] == g]
        if not members:
            lines.append("| {} | 0 | - | - |".format(g))
            continue
        counts = [r["image_count"] for r in members]
        lines.append(
            "| {} | {} | {:.1f} | {}-{} |".format(
                g,
                len(members),
                float(np.mean([r["AP"] for r in members])),
                min(counts),
                max(counts),
            )
        )
    return "\n".join(lines) + "\n"


def _plot(rows: List[Dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"r": "tab:red", "c": "tab:orange", "f": "tab:blue"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for g in GROUPS:
        members = [r for r in rows if r["frequency"] == g]
        if not members:
            continue
        x = [max(r["image_count"], 1) for r in members]
        y = [r["AP"] for r in members]
        ax.scatter(x, y, s=22, color=colors[g], label="{} (mean AP {:.1f})".format(g, np.mean(y)))
    ax.set_xscale("log")
    ax.set_xlabel("training images of the category (log)")
    ax.set_ylabel("box AP")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class PerClassAPReport(DatasetEvaluator):
    """Writes the per-class AP files of the module doc into ``output_dir`` (main process); place
    it after an ``LVISEvaluator`` with the same ``output_dir``. Returns no results of its own."""

    def __init__(self, dataset_name: str, output_dir: str):
        self.dataset_name = dataset_name
        self.output_dir = output_dir

    def reset(self):
        pass

    def process(self, inputs, outputs):
        pass

    def evaluate(self):
        if not comm.is_main_process():
            return {}
        results = os.path.join(self.output_dir, RESULTS_FILE)
        if not os.path.isfile(results):
            logger.warning("No %s in %s: no per-class AP report", RESULTS_FILE, self.output_dir)
            return {}
        rows = self.per_class_rows(results)
        with open(os.path.join(self.output_dir, "per_class_ap.json"), "w") as f:
            json.dump(rows, f, indent=1)
        table = per_group_table(rows)
        with open(os.path.join(self.output_dir, "per_group_ap.md"), "w") as f:
            f.write(table)
        _plot(rows, os.path.join(self.output_dir, "per_class_ap.png"), self.dataset_name)
        logger.info("Box AP per frequency group of %s:\n%s", self.dataset_name, table)
        return {}

    def per_class_rows(self, results_file: str) -> List[Dict]:
        from lvis import LVIS, LVISEval, LVISResults

        patch_lvis_numpy_aliases()
        gt = LVIS(MetadataCatalog.get(self.dataset_name).json_file)
        with open(results_file) as f:
            detections = [d for d in json.load(f) if "bbox" in d]
        if not detections:
            return []
        lvis_eval = LVISEval(gt, LVISResults(gt, detections), "bbox")
        lvis_eval.run()
        ap = per_class_ap(lvis_eval.eval["precision"])
        rows = []
        for k, cat_id in enumerate(lvis_eval.params.cat_ids):
            if np.isnan(ap[k]):
                continue
            cat = gt.cats[cat_id]
            rows.append(
                {
                    "id": cat_id,
                    "name": cat.get("name", str(cat_id)),
                    "frequency": cat.get("frequency", ""),
                    "image_count": int(cat.get("image_count", 0)),
                    "AP": 100.0 * float(ap[k]),
                }
            )
        return rows
