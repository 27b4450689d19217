"""A user's own COCO- or LVIS-format dataset, registered from the command line without code.

``--dataset NAME:JSON:IMAGE_ROOT`` (``projects/train_net.py``, ``projects/lazy_train_net.py``)
registers ``NAME`` in Detectron2's ``DatasetCatalog`` / ``MetadataCatalog``:

* the format is detected from the json: LVIS when its images carry ``neg_category_ids`` (loaded by
  Detectron2's ``load_lvis_json``, category ids 1..C), COCO otherwise (``load_coco_json``);
* ``thing_classes`` and ``thing_dataset_id_to_contiguous_id`` come from the json's categories at
  once, so the class-count check (:mod:`libra_d2.data.dataset_check`) and the model see them before
  any data is loaded.

:func:`attach_frequency_metadata` then gives the datasets of a config what the methods need, from
the **training** split (``DATASETS.TRAIN``):

* every training dataset registered here gets ``class_image_count`` (Detectron2's layout: one
  ``{"id", "image_count", "instance_count"}`` per category, as LVIS' metadata on Detectron2 main)
  and ``category_frequency`` (LVIS' rule: rare up to 10 training images, common up to 100), which
  RFS, BCR, EFL's and LOCE's per-group logs and Detectron2's federated loss read;
* every test dataset registered here gets the training groups and is evaluated with Detectron2's
  ``LVISEvaluator`` (the ``lvis`` package's official code) on an LVIS-format copy of its json. In
  that copy each image lists every category it does not contain as a verified negative, so the
  evaluation is exhaustive as COCO's, and it reports AP, AP50, AP75 and APr / APc / APf by the
  training groups. COCO crowd annotations have no LVIS counterpart and are left out of the copy.

The counts and the copies are cached under ``$LIBRA_D2_CACHE`` (default
``~/.cache/libra_d2/datasets``), keyed by the json's path, size and modification time, and rebuilt
when the json changes.
"""

import hashlib
import json
import logging
import os
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json
from detectron2.data.datasets.lvis import load_lvis_json
from detectron2.utils import comm

from ..frequency_groups import LVIS_COMMON_MAX_IMAGES, LVIS_RARE_MAX_IMAGES, frequency_group_of

__all__ = [
    "DatasetSpec",
    "attach_frequency_metadata",
    "parse_dataset_spec",
    "register_json_dataset",
    "registered_json_datasets",
]

logger = logging.getLogger(__name__)


class DatasetSpec(NamedTuple):
    name: str
    json_file: str
    image_root: str


#: name -> (spec, format, sorted category ids) of every dataset registered by
#: :func:`register_json_dataset`
_REGISTERED: Dict[str, tuple] = {}


def parse_dataset_spec(text: str) -> DatasetSpec:
    """``NAME:JSON:IMAGE_ROOT`` -> :class:`DatasetSpec`, with the files checked."""
    name, _, rest = text.partition(":")
    json_file, _, image_root = rest.rpartition(":")
    if not name or not json_file or not image_root:
        raise ValueError(
            "--dataset {!r}: expected NAME:JSON:IMAGE_ROOT, e.g. "
            "my_train:data/train.json:data/images".format(text)
        )
    if not os.path.isfile(json_file):
        raise FileNotFoundError("--dataset {}: no annotation file {}".format(name, json_file))
    if not os.path.isdir(image_root):
        raise FileNotFoundError("--dataset {}: no image folder {}".format(name, image_root))
    return DatasetSpec(name, os.path.abspath(json_file), os.path.abspath(image_root))


def _read(json_file: str) -> dict:
    try:
        with open(json_file) as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError("{} is not valid JSON: {}".format(json_file, e)) from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations")):
        raise ValueError(
            "{} is not a COCO- or LVIS-format detection file (it needs 'images', "
            "'annotations' and 'categories')".format(json_file)
        )
    if not data.get("categories"):
        raise ValueError("{} has no 'categories'".format(json_file))
    return data


def _json_format(data: dict) -> str:
    images = data["images"]
    return "lvis" if images and "neg_category_ids" in images[0] else "coco"


def register_json_dataset(spec: DatasetSpec) -> str:
    """Register ``spec`` (see the module doc); returns the detected format. Registering the same
    spec again is a no-op; another dataset under a taken name is refused."""
    if spec.name in _REGISTERED:
        if _REGISTERED[spec.name][0] == spec:
            return _REGISTERED[spec.name][1]
        raise ValueError("--dataset {}: already registered as {}".format(spec.name, spec))
    if spec.name in DatasetCatalog.list():
        raise ValueError(
            "--dataset {}: the name is taken by a registered dataset; choose another".format(
                spec.name
            )
        )
    data = _read(spec.json_file)
    fmt = _json_format(data)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    meta = MetadataCatalog.get(spec.name)
    if fmt == "lvis":
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(
                "--dataset {}: an LVIS-format file needs category ids 1..{} (Detectron2's LVIS "
                "loader maps id k to class k - 1); convert it to COCO format (drop the images' "
                "neg_category_ids) to use other ids".format(spec.name, len(ids))
            )
        DatasetCatalog.register(spec.name, lambda s=spec: load_lvis_json(s.json_file, s.image_root))
        meta.set(json_file=spec.json_file, evaluator_type="lvis")
    else:
        DatasetCatalog.register(
            spec.name, lambda s=spec: load_coco_json(s.json_file, s.image_root, s.name)
        )
        meta.set(thing_dataset_id_to_contiguous_id={k: i for i, k in enumerate(ids)})
    meta.set(thing_classes=[c["name"] for c in categories], image_root=spec.image_root)
    _REGISTERED[spec.name] = (spec, fmt, ids)
    logger.info(
        "Registered %s: %s, %d images, %d categories (%s format)",
        spec.name,
        spec.json_file,
        len(data["images"]),
        len(categories),
        fmt.upper(),
    )
    return fmt


def registered_json_datasets() -> List[str]:
    return list(_REGISTERED)


# ---------------------------------------------------------------------------------- statistics
def _cache_dir() -> str:
    root = os.environ.get("LIBRA_D2_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "libra_d2"
    )
    return os.path.join(root, "datasets")


def _cache_key(json_file: str, *extra) -> str:
    st = os.stat(json_file)
    text = repr((os.path.abspath(json_file), st.st_size, st.st_mtime_ns) + extra)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _write_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "{}.tmp.{}".format(path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def category_counts(data: dict) -> List[dict]:
    """``{"id", "image_count", "instance_count"}`` of every category of a COCO / LVIS dict, by id
    (crowd annotations excluded, as Detectron2's samplers and LVIS count instances)."""
    images, instances = {}, {}
    for a in data["annotations"]:
        if a.get("iscrowd", 0):
            continue
        c = a["category_id"]
        images.setdefault(c, set()).add(a["image_id"])
        instances[c] = instances.get(c, 0) + 1
    return [
        {
            "id": c["id"],
            "image_count": len(images.get(c["id"], ())),
            "instance_count": instances.get(c["id"], 0),
        }
        for c in sorted(data["categories"], key=lambda c: c["id"])
    ]


def _cached_counts(json_file: str) -> List[dict]:
    path = os.path.join(_cache_dir(), "counts_{}.json".format(_cache_key(json_file)))
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    counts = category_counts(_read(json_file))
    if comm.is_main_process():
        _write_atomic(path, counts)
    return counts


def lvis_format_copy(
    data: dict, frequency_by_id: Dict[int, str], image_count_by_id: Dict[int, int] = None
) -> dict:
    """An LVIS-format copy of a COCO-format dict for the ``lvis`` package's evaluation: every
    image lists the categories it does not contain as verified negatives (exhaustive, as COCO),
    categories carry their training ``frequency`` (and ``image_count``), crowd annotations are
    left out and every annotation has an ``area``."""
    present: Dict[int, set] = {}
    annotations = []
    for a in data["annotations"]:
        if a.get("iscrowd", 0):
            continue
        a = dict(a)
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
        annotations.append(a)
        present.setdefault(a["image_id"], set()).add(a["category_id"])
    all_ids = sorted(c["id"] for c in data["categories"])
    images = [
        dict(
            im,
            neg_category_ids=[c for c in all_ids if c not in present.get(im["id"], ())],
            not_exhaustive_category_ids=[],
        )
        for im in data["images"]
    ]
    categories = [dict(c, frequency=frequency_by_id[c["id"]]) for c in data["categories"]]
    if image_count_by_id is not None:
        for c in categories:
            c["image_count"] = int(image_count_by_id[c["id"]])
    return {"images": images, "annotations": annotations, "categories": categories}


def _train_counts(train_names: Sequence[str]) -> Optional[Dict[str, Dict[int, int]]]:
    """Per class name: training image and instance counts over the training datasets registered
    here, or None when none is."""
    names = [n for n in train_names if n in _REGISTERED]
    if not names:
        return None
    images, instances = {}, {}
    for name in names:
        spec = _REGISTERED[name][0]
        classes = MetadataCatalog.get(name).thing_classes
        for cls, c in zip(classes, _cached_counts(spec.json_file)):
            images[cls] = images.get(cls, 0) + c["image_count"]
            instances[cls] = instances.get(cls, 0) + c["instance_count"]
    return {"image_count": images, "instance_count": instances}


def attach_frequency_metadata(
    train_names: Iterable[str],
    test_names: Iterable[str] = (),
    rare_max: int = LVIS_RARE_MAX_IMAGES,
    common_max: int = LVIS_COMMON_MAX_IMAGES,
) -> None:
    """Give the datasets registered here among ``train_names`` / ``test_names`` the training
    split's class statistics and frequency groups, and the COCO-format test sets their LVIS-format
    evaluation copy (see the module doc). Datasets not registered here are left alone."""
    train_names, test_names = list(train_names), list(test_names)
    counts = _train_counts(train_names)
    if counts is None:
        return
    summary = {g: 0 for g in "rcf"}
    for n in counts["image_count"].values():
        summary[frequency_group_of(n, rare_max, common_max)] += 1
    for name in dict.fromkeys(train_names + test_names):  # the same order in every process
        if name not in _REGISTERED:
            continue
        spec, fmt, ids = _REGISTERED[name]
        meta = MetadataCatalog.get(name)
        classes = meta.thing_classes
        unknown = [c for c in classes if c not in counts["image_count"]]
        if unknown:
            raise ValueError(
                "{}: categories {} are not in the training datasets {}".format(
                    name, unknown[:5], train_names
                )
            )
        image_counts = [counts["image_count"][c] for c in classes]
        groups = [frequency_group_of(n, rare_max, common_max) for n in image_counts]
        _set_or_check(meta, "category_frequency", groups)
        if name in train_names:
            _set_or_check(
                meta,
                "class_image_count",
                [
                    {"id": i, "image_count": n, "instance_count": counts["instance_count"][c]}
                    for i, c, n in zip(ids, classes, image_counts)
                ],
            )
        if name in test_names and fmt == "coco":
            key = _cache_key(spec.json_file, tuple(groups), tuple(image_counts))
            path = os.path.join(_cache_dir(), "lvis_format_{}_{}.json".format(name, key))
            if not os.path.isfile(path) and comm.is_main_process():
                copy = lvis_format_copy(
                    _read(spec.json_file), dict(zip(ids, groups)), dict(zip(ids, image_counts))
                )
                _write_atomic(path, copy)
            comm.synchronize()
            _set_or_check(meta, "json_file", path)
            _set_or_check(meta, "evaluator_type", "lvis")
    logger.info("Frequency groups of the classes of %s: %s", train_names, summary)


def _set_or_check(meta, key, value) -> None:
    if meta.get(key, None) is None:
        meta.set(**{key: value})
    elif meta.get(key) != value:
        raise ValueError(
            "{}: metadata {} is already {!r}, not {!r} (the same dataset in two configs with "
            "different training sets?)".format(meta.name, key, meta.get(key), value)
        )
