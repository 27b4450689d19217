"""LT-Shapes in Detectron2: loading and registration (``lt_shapes_train``, ``lt_shapes_val``), in
the manner of Detectron2's ``lvis.py``.

LT-Shapes is a small, deterministic, long-tailed detection dataset in LVIS v1 format, a synthetic
stand-in for LVIS small enough to train on a CPU: 32 categories (``lt_shapes_categories``) whose
numbers of train images follow LVIS's frequency groups. The annotation files are LVIS v1 JSON, so
Detectron2's ``LVISEvaluator`` reports AP, AP50, AP75, APr, APc and APf. It is made by
``python -m libra_d2.data.datasets.lt_shapes_generate`` (``datasets/prepare_lt_shapes.py``,
``make data``).

Layout of a generated dataset (``image_root`` is ``root`` for both splits)::

    root/lt_shapes_train.json    root/train/000001.png ...
    root/lt_shapes_val.json      root/val/000001.png ...
    root/params.json             (generation parameters + category statistics; written last)
"""

import functools
import json
import logging
import os
from typing import List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis import load_lvis_json

from ..frequency_groups import frequency_group_of
from .lt_shapes_categories import LT_SHAPES_CATEGORIES, lt_shapes_category_names
from .lt_shapes_plan import PRESETS, plan_lt_shapes

__all__ = [
    "VARIANTS",
    "LTShapesNotFoundError",
    "default_root",
    "load_lt_shapes_json",
    "read_json",
    "register_lt_shapes",
]

logger = logging.getLogger(__name__)

TRAIN_JSON = "lt_shapes_train.json"
VAL_JSON = "lt_shapes_val.json"
PARAMS_JSON = "params.json"
SPLITS = ("train", "val")
#: the registered variants: name prefix (also the folder under $DETECTRON2_DATASETS) -> the
#: generator preset that makes it; each is registered as ``<prefix>_train`` / ``<prefix>_val``
VARIANTS = {"lt_shapes": "default", "lt_shapes_dense": "dense", "lt_shapes_large": "large"}
#: the module whose ``main`` generates the dataset (named in the errors)
GENERATE_MODULE = "libra_d2.data.datasets.lt_shapes_generate"


def read_json(path: str):
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class LTShapesNotFoundError(FileNotFoundError):
    """The LT-Shapes files are missing: they have to be generated first."""


def default_root(preset: Optional[str] = None) -> str:
    """``$DETECTRON2_DATASETS/lt_shapes`` (``datasets/lt_shapes`` when the variable is unset), or
    ``.../lt_shapes_dense`` for the dense preset."""
    folder = {p: v for v, p in VARIANTS.items()}.get(preset, "lt_shapes")
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), folder)


def _generate_hint(root: str, preset: str = "default") -> str:
    if preset != "default":
        return f"Generate it with `python -m {GENERATE_MODULE} --preset {preset} --root {root}`."
    return f"Generate it with `make data` or `python -m {GENERATE_MODULE} --root {root}`."


def _validate_json(json_file: str, image_root: str, preset: str = "default") -> List[dict]:
    """Check the annotation file and its images; returns its categories."""
    if not os.path.isfile(json_file):
        raise LTShapesNotFoundError(
            f"LT-Shapes annotation file not found: {json_file}. "
            f"{_generate_hint(image_root, preset)}"
        )
    data = read_json(json_file)
    if not isinstance(data, dict):
        raise ValueError(
            f"LT-Shapes annotation file {json_file} is not a valid JSON object. "
            f"{_generate_hint(image_root, preset)}"
        )
    if not data.get("images"):
        raise ValueError(
            f"LT-Shapes annotation file {json_file} has no images. "
            f"{_generate_hint(image_root, preset)}"
        )
    if not data.get("annotations"):
        raise ValueError(
            f"LT-Shapes annotation file {json_file} has no annotations. "
            f"{_generate_hint(image_root, preset)}"
        )
    if not data.get("categories"):
        raise ValueError(
            f"LT-Shapes annotation file {json_file} has no categories. "
            f"{_generate_hint(image_root, preset)}"
        )
    for img in data["images"]:
        path = os.path.join(image_root, img["file_name"])
        if not os.path.isfile(path):
            raise LTShapesNotFoundError(
                f"LT-Shapes image {path} (listed in {json_file}) is missing. "
                f"{_generate_hint(image_root, preset)} (add --overwrite to regenerate)"
            )
    return data["categories"]


def load_lt_shapes_json(json_file: str, image_root: str) -> List[dict]:
    """Detectron2 dataset dicts of one split (category ids 0..C-1), via Detectron2's own
    ``load_lvis_json``.  Raises :class:`LTShapesNotFoundError` (a ``FileNotFoundError``)
    when the file or an image is missing and ``ValueError`` when the file is empty."""
    return _load_checked(json_file, image_root)[0]


def _load_checked(json_file: str, image_root: str, preset: str = "default"):
    """:func:`load_lt_shapes_json` and the file's category entries (read by the check)."""
    categories = _validate_json(json_file, image_root, preset)
    # load_lvis_json (Detectron2 v0.6) concatenates image_root and the split folder taken
    # from coco_url without a separator, so image_root must end with one; later versions
    # join image_root and file_name, which works with the trailing separator as well.
    return load_lvis_json(json_file, os.path.join(image_root, ""), dataset_name=None), categories


#: registration plans a missing dataset (for its statistics) only up to this many train images:
#: every ``import libra_d2`` registers the variants, and the large one's plan takes seconds
PLAN_AT_REGISTRATION_MAX_IMAGES = 5000


def _category_stats(root: str, preset: str = "default") -> Optional[List[dict]]:
    """Per-category train statistics: from the generated data when present, otherwise
    the plan of the preset's dataset (the default one is what ``make data`` generates), or None
    for a preset too large to plan at registration."""
    stats = read_json(os.path.join(root, PARAMS_JSON))
    if isinstance(stats, dict) and stats.get("categories"):
        return stats["categories"]
    data = read_json(os.path.join(root, TRAIN_JSON))
    if isinstance(data, dict) and data.get("categories"):
        return data["categories"]
    sizes = PRESETS[preset]
    if sizes["num_train"] > PLAN_AT_REGISTRATION_MAX_IMAGES:
        return None
    layout = {k: sizes[k] for k in ("min_objects", "max_objects") if k in sizes}
    counts = plan_lt_shapes(0, sizes["num_train"], sizes["num_val"], **layout)["train_image_counts"]
    return [
        {
            "id": c["id"],
            "name": c["name"],
            "image_count": counts[c["id"]],
            "frequency": frequency_group_of(counts[c["id"]]),
        }
        for c in LT_SHAPES_CATEGORIES
    ]


def _load_registered(
    json_file: str, image_root: str, dataset_name: str, preset: str = "default"
) -> List[dict]:
    dicts, data_cats = _load_checked(json_file, image_root, preset)
    meta = MetadataCatalog.get(dataset_name)
    expect = [{"id": c["id"], "image_count": c["image_count"]} for c in data_cats]
    if getattr(meta, "class_image_count", None) != expect:
        logger.warning(
            "%s: class_image_count in the metadata does not match %s (data generated after "
            "register_lt_shapes() with other sizes?). Call register_lt_shapes() again.",
            dataset_name,
            json_file,
        )
    return dicts


def register_lt_shapes(root: Optional[str] = None, variant: str = "lt_shapes") -> None:
    """Register ``<variant>_train`` and ``<variant>_val`` with Detectron2: ``lt_shapes_train`` /
    ``lt_shapes_val`` by default, ``variant="lt_shapes_dense"`` for the dense variant (whose root
    defaults to ``$DETECTRON2_DATASETS/lt_shapes_dense``).

    Lazy: the JSON is read only when ``DatasetCatalog.get`` is called.  Idempotent: calling
    it again (with the same or another root) replaces the previous registration.
    Metadata: thing_classes, thing_colors, json_file, image_root, evaluator_type="lvis",
    class_image_count ([{"id", "image_count"}], train statistics) and category_frequency
    (['r'|'c'|'f'] in contiguous order).  The statistics are read from ``root/params.json``
    when the data exist, else they are those of the variant's plan; a missing large variant
    (more than ``PLAN_AT_REGISTRATION_MAX_IMAGES`` train images) is registered without them.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown LT-Shapes variant {variant!r}; choose from {sorted(VARIANTS)}")
    preset = VARIANTS[variant]
    root = os.fspath(root) if root is not None else default_root(preset)
    planned = _category_stats(root, preset)
    statistics = {}
    if planned is not None:  # else the statistics come once the data exist (register again)
        stats = {c["id"]: c for c in planned}
        statistics = dict(
            class_image_count=[
                {"id": c["id"], "image_count": int(stats[c["id"]]["image_count"])}
                for c in LT_SHAPES_CATEGORIES
            ],
            category_frequency=[stats[c["id"]]["frequency"] for c in LT_SHAPES_CATEGORIES],
        )
    for split in SPLITS:
        name = f"{variant}_{split}"
        json_file = os.path.join(root, TRAIN_JSON if split == "train" else VAL_JSON)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        DatasetCatalog.register(
            name, functools.partial(_load_registered, json_file, root, name, preset)
        )
        MetadataCatalog.get(name).set(
            thing_classes=lt_shapes_category_names(),
            thing_colors=[list(c["rgb"]) for c in LT_SHAPES_CATEGORIES],
            json_file=json_file,
            image_root=root,
            evaluator_type="lvis",
            **statistics,
        )
