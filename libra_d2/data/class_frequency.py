"""Class frequencies of the training datasets, for the methods that balance by them (Bucketed Class
Re-weighting, EFL's and LOCE's per-group logging, the plots): images per class and their
frequency groups (by ``libra_d2.data.frequency_groups``)."""

import logging
from typing import List, Optional, Sequence

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..layers.class_reweighting import class_frequencies
from .frequency_groups import frequency_group_of

__all__ = ["training_class_image_counts", "training_frequency_groups"]


logger = logging.getLogger(__name__)


def training_class_image_counts(dataset_names, num_classes):
    """Per-class number of training images containing the class (contiguous ids), from the
    datasets' ``class_image_count`` metadata when present, else counted from the dataset dicts."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        if meta.get("class_image_count", None) is not None:
            counts += class_frequencies(
                meta.class_image_count,
                num_classes=num_classes,
                dataset_id_to_contiguous_id=meta.get("thing_dataset_id_to_contiguous_id", None),
            )
            continue
        logger.info("Counting images per class of %s ...", name)
        for record in DatasetCatalog.get(name):
            present = {a["category_id"] for a in record.get("annotations", [])}
            for c in present:
                counts[c] += 1
    return counts


def _lvis_groups_by_class_names(thing_classes: Sequence[str]) -> Optional[List[str]]:
    """The frequency groups of Detectron2's LVIS category lists, when ``thing_classes`` is one."""
    try:
        from detectron2.data.datasets.lvis_v0_5_categories import LVIS_CATEGORIES as V05
        from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES as V1
    except ImportError:  # pragma: no cover
        return None
    for categories in (V1, V05):
        if len(categories) != len(thing_classes):
            continue
        ordered = sorted(categories, key=lambda c: c["id"])
        if [c["synonyms"][0] for c in ordered] == list(thing_classes):
            return [c["frequency"] for c in ordered]
    return None


def training_frequency_groups(
    dataset_names: Sequence[str], num_classes: int
) -> Optional[List[str]]:
    """One LVIS frequency group ('r' / 'c' / 'f') per contiguous class, from the metadata of the
    first training dataset that provides it, in this order: ``category_frequency`` (e.g. LT-Shapes),
    ``class_image_count`` (LVIS thresholds on image counts), Detectron2's LVIS category list when
    ``thing_classes`` is LVIS's. None when no dataset tells (then only overall means are logged).
    Reads metadata only, never the dataset itself.
    """
    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        groups = meta.get("category_frequency", None)
        if groups is not None and len(groups) == num_classes:
            return [str(g) for g in groups]
        counts = meta.get("class_image_count", None)
        if counts is not None:
            try:
                freqs = class_frequencies(
                    counts,
                    num_classes=num_classes,
                    dataset_id_to_contiguous_id=meta.get("thing_dataset_id_to_contiguous_id", None),
                )
            except (ValueError, KeyError) as e:
                logger.warning("class_image_count of %s unusable for frequency groups: %s", name, e)
            else:
                return [frequency_group_of(float(c)) for c in freqs]
        classes = meta.get("thing_classes", None)
        if classes is not None and len(classes) == num_classes:
            groups = _lvis_groups_by_class_names(classes)
            if groups is not None:
                return groups
    return None
