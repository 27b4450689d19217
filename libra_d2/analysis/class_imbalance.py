"""Class imbalance of a training set: images and instances per class, their frequency groups and the
repeat factors that Detectron2's ``RepeatFactorTrainingSampler`` (RFS) would give each class."""

import math
from typing import Dict, Sequence

from detectron2.data.samplers import RepeatFactorTrainingSampler

from ..data.frequency_groups import (
    LVIS_COMMON_MAX_IMAGES,
    LVIS_RARE_MAX_IMAGES,
    frequency_group_of,
)

__all__ = ["LVIS_REPEAT_THRESHOLD", "class_imbalance", "class_repeat_factors"]

#: the RFS threshold of Detectron2's LVIS configs: the repeat factors shown for a config without RFS
LVIS_REPEAT_THRESHOLD = 0.001


def class_repeat_factors(image_counts: Sequence[int], num_images: int, repeat_thresh: float):
    """RFS's per-class factor ``max(1, sqrt(t / f_c))`` with ``f_c`` the fraction of images that
    contain class ``c`` (an image repeats by the largest factor of its classes; ``inf`` for a class
    without images)."""
    factors = []
    for n in image_counts:
        f = n / max(1, num_images)
        factors.append(max(1.0, math.sqrt(repeat_thresh / f)) if f > 0 else math.inf)
    return factors


def class_imbalance(
    dataset_dicts: Sequence[Dict],
    class_names: Sequence[str],
    repeat_thresh: float = LVIS_REPEAT_THRESHOLD,
    rare_max: int = LVIS_RARE_MAX_IMAGES,
    common_max: int = LVIS_COMMON_MAX_IMAGES,
) -> Dict:
    """Per-class statistics of Detectron2 dataset dicts (contiguous ``category_id``; crowd boxes
    left out, as the trainers do).

    Returns a dict with ``classes`` (one dict per class: name, images, instances, group, rfs
    factor), ``groups`` (per group: classes, images and instances ranges and sums, mean factor),
    ``num_images``, ``imbalance_ratio`` (most / fewest images of a class that has any) and
    ``image_repeat`` (RFS's per-image factors: mean, max, and the epoch length they give).
    """
    num_classes = len(class_names)
    images = [0] * num_classes
    instances = [0] * num_classes
    for record in dataset_dicts:
        present = set()
        for ann in record.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            c = int(ann["category_id"])
            if not 0 <= c < num_classes:
                raise ValueError(
                    "category_id {} outside [0, {}) in {}".format(
                        c, num_classes, record.get("file_name")
                    )
                )
            instances[c] += 1
            present.add(c)
        for c in present:
            images[c] += 1
    num_images = len(dataset_dicts)
    factors = class_repeat_factors(images, num_images, repeat_thresh)
    per_image = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        list(dataset_dicts), repeat_thresh
    )
    classes = [
        {
            "name": class_names[c],
            "images": images[c],
            "instances": instances[c],
            "group": frequency_group_of(images[c], rare_max=rare_max, common_max=common_max),
            "rfs_factor": factors[c],
        }
        for c in range(num_classes)
    ]
    groups = {}
    for g in ("r", "c", "f"):
        members = [c for c in classes if c["group"] == g]
        if not members:
            groups[g] = {"classes": 0}
            continue
        finite = [c["rfs_factor"] for c in members if math.isfinite(c["rfs_factor"])]
        groups[g] = {
            "classes": len(members),
            "images_min": min(c["images"] for c in members),
            "images_max": max(c["images"] for c in members),
            "instances": sum(c["instances"] for c in members),
            "instance_share": sum(c["instances"] for c in members) / max(1, sum(instances)),
            "rfs_factor_mean": sum(finite) / len(finite) if finite else math.nan,
        }
    with_images = [n for n in images if n > 0]
    return {
        "num_images": num_images,
        "num_instances": sum(instances),
        "classes": classes,
        "groups": groups,
        "classes_without_images": [class_names[c] for c in range(num_classes) if not images[c]],
        "imbalance_ratio": max(with_images) / min(with_images) if with_images else math.nan,
        "repeat_thresh": repeat_thresh,
        "image_repeat": {
            "mean": float(per_image.mean()) if len(per_image) else math.nan,
            "max": float(per_image.max()) if len(per_image) else math.nan,
            "epoch_images": float(per_image.sum()),
        },
    }
