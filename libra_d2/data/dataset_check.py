"""The training data checked before anything is written or trained: one pass over the records.

What it finds, for each dataset of ``DATASETS.TRAIN``:

* the annotation file does not load (not json, truncated): named by path;
* the category count differs from the ``NUM_CLASSES`` of the configured heads, or a record has a
  ``category_id`` outside ``[0, NUM_CLASSES)`` (Detectron2 would fail at iteration 0 with an
  ``IndexError``, or train unused classes silently);
* image files that do not exist (existence only: seconds for LVIS, no image is decoded);
* boxes with zero or negative width or height, and boxes reaching outside the image, counted, with
  the first records named; ``DATALOADER.BAD_BOXES`` says what training does with them:

  - ``"clip"`` (default, what Detectron2's mapper does silently): clipped to the image; those left
    empty are dropped;
  - ``"drop"``: every box that is degenerate or not inside the image is dropped;
  - ``"error"``: training does not start;

* a dataset left without a single usable box.

:func:`check_training_data` returns a one-paragraph summary and raises :class:`DatasetError`
listing every error at once.
"""

import os
from typing import Dict, List, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

__all__ = [
    "BAD_BOX_POLICIES",
    "DatasetError",
    "box_problem",
    "apply_box_policy",
    "check_training_data",
    "check_training_records",
    "num_classes_of_heads",
    "num_classes_of_lazy_model",
]

BAD_BOX_POLICIES = ("clip", "drop", "error")
#: How far (pixels) a box may reach past the image border before it counts as outside it.
BORDER_TOLERANCE = 1.0
MAX_NAMED = 3


class DatasetError(RuntimeError):
    """A dataset named by the config is unknown, its files are missing, or its content cannot be
    trained with the config."""


def _xyxy(ann) -> Tuple[float, float, float, float]:
    return BoxMode.convert(
        list(ann["bbox"]), ann.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS
    )


def box_problem(ann, width: float, height: float) -> str:
    """ "degenerate", "outside" (reaches past the image border) or "" for a usable box."""
    x0, y0, x1, y1 = _xyxy(ann)
    if not (x1 > x0 and y1 > y0):
        return "degenerate"
    t = BORDER_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        return "outside"
    return ""


def _clipped_is_empty(ann, width, height) -> bool:
    x0, y0, x1, y1 = _xyxy(ann)
    return min(x1, width) <= max(x0, 0.0) or min(y1, height) <= max(y0, 0.0)


def _kept(ann, width, height, policy: str) -> bool:
    """Whether training keeps ``ann`` under ``policy`` ("clip" / "drop"; crowd boxes always)."""
    if ann.get("iscrowd", 0):
        return True
    if policy == "drop":
        return not box_problem(ann, width, height)
    return box_problem(ann, width, height) != "degenerate" and not _clipped_is_empty(
        ann, width, height
    )


def apply_box_policy(records: Sequence[Dict], policy: str) -> List[Dict]:
    """``records`` with the annotations ``policy`` removes (module doc) left out: "drop" removes
    degenerate and outside boxes; "clip" removes the boxes that clipping would leave empty (the
    mapper clips the others); "error" keeps all (the check has refused bad ones)."""
    if policy not in BAD_BOX_POLICIES:
        raise ValueError(
            "DATALOADER.BAD_BOXES={!r}; expected one of {}".format(policy, BAD_BOX_POLICIES)
        )
    if policy == "error":
        return list(records)
    out = []
    for r in records:
        anns = r.get("annotations")
        if not anns or "width" not in r:
            out.append(r)
            continue
        keep = [a for a in anns if _kept(a, r["width"], r["height"], policy)]
        out.append(r if len(keep) == len(anns) else dict(r, annotations=keep))
    return out


def num_classes_of_heads(cfg) -> Tuple[str, int]:
    """``(key, value)`` of the class count the configured detector predicts (None for a
    proposal-only network)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if "RetinaNet" in arch:
        return "MODEL.RETINANET.NUM_CLASSES", cfg.MODEL.RETINANET.NUM_CLASSES
    if "FCOS" in arch and "FCOS" in cfg.MODEL:
        return "MODEL.FCOS.NUM_CLASSES", cfg.MODEL.FCOS.NUM_CLASSES
    if arch == "ProposalNetwork":
        return "", None
    return "MODEL.ROI_HEADS.NUM_CLASSES", cfg.MODEL.ROI_HEADS.NUM_CLASSES


def num_classes_of_lazy_model(model_cfg) -> Tuple[str, int]:
    """``(key, value)`` of the class count of a lazy config's ``model`` (``model.num_classes`` of
    a dense detector, ``model.roi_heads.num_classes`` of an R-CNN), or ``("", None)``."""
    for path in (("num_classes",), ("roi_heads", "num_classes")):
        node = model_cfg
        try:
            for key in path:
                node = node[key]
        except (KeyError, AttributeError, TypeError):
            continue
        if isinstance(node, int):
            return "model." + ".".join(path), node
    return "", None


def _load_records(name):
    meta = MetadataCatalog.get(name)
    try:
        return DatasetCatalog.get(name)
    except (ValueError, UnicodeDecodeError, EOFError) as e:  # json.JSONDecodeError is a ValueError
        where = meta.get("json_file", None) or meta.get("dirname", None) or "its files"
        raise DatasetError(
            "dataset '{}': cannot read {}: {}: {}".format(name, where, type(e).__name__, e)
        ) from None


def check_training_data(cfg, names: Sequence[str]) -> str:
    """:func:`check_training_records` with the class count of the heads and the
    ``DATALOADER.BAD_BOXES`` policy of a YAML ``cfg``."""
    key, num_classes = num_classes_of_heads(cfg)
    return check_training_records(names, key, num_classes, cfg.DATALOADER.BAD_BOXES)


def check_training_records(names: Sequence[str], key: str, num_classes, policy: str) -> str:
    """Check the training datasets ``names`` (module doc) against the class count
    ``num_classes`` (config key ``key``; None: not checked) and the box ``policy``; returns the
    summary, raises :class:`DatasetError` with every error found."""
    if policy not in BAD_BOX_POLICIES:
        raise DatasetError(
            "DATALOADER.BAD_BOXES={!r}; expected one of {}".format(
                policy, ", ".join(BAD_BOX_POLICIES)
            )
        )
    errors, lines = [], []
    for name in names:
        records = _load_records(name)
        meta = MetadataCatalog.get(name)
        classes = meta.get("thing_classes", None)
        if num_classes is not None and classes is not None and len(classes) != num_classes:
            errors.append(
                "dataset '{}' has {} categories but {} = {}: set {} {}".format(
                    name, len(classes), key, num_classes, key, len(classes)
                )
            )
        notes = []
        missing, bad, out_of_range = [], {"degenerate": [], "outside": []}, []
        boxes = usable = 0
        for r in records:
            path = r.get("file_name")
            if path and not os.path.exists(path):
                missing.append(path)
            w, h = r.get("width"), r.get("height")
            for a in r.get("annotations", []):
                boxes += 1
                c = a.get("category_id")
                if num_classes is not None and c is not None and not 0 <= c < num_classes:
                    out_of_range.append((r.get("file_name"), c))
                if not (w and h):  # no image size: nothing to check the box against
                    usable += 1
                    continue
                problem = box_problem(a, w, h)
                if problem:
                    bad[problem].append(r.get("file_name"))
                if policy == "error" or _kept(a, w, h, policy):  # ("error": unused)
                    usable += 1
        if missing:
            errors.append(
                "dataset '{}': {} image files do not exist, e.g. {}".format(
                    name, len(missing), ", ".join(missing[:MAX_NAMED])
                )
            )
        if out_of_range:
            errors.append(
                "dataset '{}': {} boxes have a category_id outside [0, {}) ({} = {}), "
                "e.g. {}".format(
                    name,
                    len(out_of_range),
                    num_classes,
                    key,
                    num_classes,
                    ", ".join("{} in {}".format(c, f) for f, c in out_of_range[:MAX_NAMED]),
                )
            )
        for kind, files in bad.items():
            if not files:
                continue
            what = "{} {} boxes ({}), first in {}".format(
                len(files),
                kind,
                (
                    "zero or negative width or height"
                    if kind == "degenerate"
                    else "reaching outside the image"
                ),
                ", ".join(sorted(set(files))[:MAX_NAMED]),
            )
            if policy == "error":
                errors.append(
                    "dataset '{}': {}; set DATALOADER.BAD_BOXES (lazy: the train "
                    "loader's bad_boxes) to 'clip' or 'drop' to train without them".format(
                        name, what
                    )
                )
            else:
                notes.append(
                    "dataset '{}': {}: {}".format(
                        name,
                        what,
                        (
                            "dropped"
                            if kind == "degenerate" or policy == "drop"
                            else "clipped to the image"
                        ),
                    )
                )
        if boxes and not usable and policy != "error":
            errors.append("dataset '{}': none of its {} boxes is usable".format(name, boxes))
        lines.append(
            "dataset '{}': {} images, {} boxes, {} categories".format(
                name, len(records), boxes, len(classes) if classes else "?"
            )
        )
        lines += notes
    if errors:
        raise DatasetError(
            "the training data cannot be used as configured:\n  - " + "\n  - ".join(errors)
        )
    return "\n".join(lines)
