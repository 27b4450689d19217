"""LT-Shapes' generator: draws the images that :func:`~.lt_shapes_plan.plan_lt_shapes` describes,
writes the PNGs and the LVIS v1 JSON files into a temporary directory and renames that directory
to ``root`` in one step, so an interrupted run never leaves a dataset that looks complete.

Command line (the twin of Detectron2's ``datasets/prepare_*.py``; ``datasets/prepare_lt_shapes.py``
and ``make data`` call it)::

    python -m libra_d2.data.datasets.lt_shapes_generate --root datasets/lt_shapes [--preset tiny]
"""

import argparse
import json
import logging
import os
import shutil
import sys
import time
import uuid
from typing import Dict, List, Optional, Sequence

from ..frequency_groups import frequency_group_of
from .lt_shapes import (
    GENERATE_MODULE,
    PARAMS_JSON,
    SPLITS,
    TRAIN_JSON,
    VAL_JSON,
    default_root,
    read_json,
)
from .lt_shapes_categories import LT_SHAPES_CATEGORIES
from .lt_shapes_plan import MAX_OBJECTS, MIN_OBJECTS, PRESETS, SPLIT_KEY, plan_lt_shapes, scene_rng
from .lt_shapes_render import MAX_REL_SIZE, MIN_REL_SIZE, polygon_area, render_image

__all__ = ["GENERATOR_VERSION", "format_summary", "generate_lt_shapes", "main"]

logger = logging.getLogger(__name__)

# Bump when the drawing or planning code changes in a way that changes the output:
# an existing dataset made by another version is then not silently reused.
GENERATOR_VERSION = 1
#: the generator's name in params.json: a dataset with other parameters is not reused, so it
#: keeps the name of the datasets made before the module moved
GENERATOR_NAME = "libra_d2.data.lt_shapes"


#: the scene layout of the presets that do not set it (the default LT-Shapes)
DEFAULT_LAYOUT = {
    "min_objects": MIN_OBJECTS,
    "max_objects": MAX_OBJECTS,
    "min_rel_size": MIN_REL_SIZE,
    "max_rel_size": MAX_REL_SIZE,
}


def _resolve_sizes(num_train, num_val, image_size, preset) -> Dict[str, int]:
    if preset is None:
        preset = "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    sizes = dict(DEFAULT_LAYOUT, **PRESETS[preset])
    for key, val in (("num_train", num_train), ("num_val", num_val), ("image_size", image_size)):
        if val is not None:
            sizes[key] = int(val)
    if sizes["image_size"] < 32:
        raise ValueError("image_size must be >= 32")
    if sizes["num_train"] < 1 or sizes["num_val"] < 1:
        raise ValueError("num_train and num_val must be >= 1")
    return sizes


def _params(seed: int, sizes: Dict[str, int]) -> Dict[str, object]:
    params = {
        "generator": GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "num_train": sizes["num_train"],
        "num_val": sizes["num_val"],
        "image_size": sizes["image_size"],
        "min_objects": sizes["min_objects"],
        "max_objects": sizes["max_objects"],
    }
    # Object sizes are recorded only where they differ from the default, so that a dataset made
    # before they were options keeps matching its parameters (and is reused).
    for key in ("min_rel_size", "max_rel_size"):
        if sizes[key] != DEFAULT_LAYOUT[key]:
            params[key] = sizes[key]
    return params


def _is_complete(root: str) -> bool:
    return all(os.path.isfile(os.path.join(root, n)) for n in (PARAMS_JSON, TRAIN_JSON, VAL_JSON))


def _write_split(
    out_dir: str,
    split: str,
    plan_images: List[List[int]],
    seed: int,
    sizes: Dict[str, int],
    info: dict,
) -> dict:
    """Draw and write one split into out_dir; returns the LVIS dict without categories."""
    import cv2

    image_size = sizes["image_size"]
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    all_ids = [c["id"] for c in LT_SHAPES_CATEGORIES]
    dropped = 0
    for idx, cat_ids in enumerate(plan_images):
        image_id = idx + 1
        rng = scene_rng(seed, SPLIT_KEY[split], 1, image_id)
        img, objs, n_drop = render_image(
            cat_ids, image_size, rng, sizes["min_rel_size"], sizes["max_rel_size"]
        )
        dropped += n_drop
        file_name = f"{split}/{image_id:06d}.png"
        if not cv2.imwrite(os.path.join(out_dir, file_name), img, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
            raise OSError(f"could not write {os.path.join(out_dir, file_name)}")
        present = sorted({o["cat"] for o in objs})
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                # Detectron2's load_lvis_json (v0.6) builds the path from the last two
                # components of coco_url ("<split>/<name>"), not from file_name.
                "coco_url": file_name,
                "height": image_size,
                "width": image_size,
                # Annotation is exhaustive, so every category absent from the image is a
                # verified negative (this makes the federated LVIS evaluation penalise all
                # false positives, like COCO's).
                "neg_category_ids": [c for c in all_ids if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        for o in objs:
            poly = o["poly"]
            x0, y0 = poly.min(axis=0)
            x1, y1 = poly.max(axis=0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(o["cat"]),
                    "segmentation": [[round(float(v), 2) for v in poly.reshape(-1)]],
                    "bbox": [
                        round(float(x0), 2),
                        round(float(y0), 2),
                        round(float(x1 - x0), 2),
                        round(float(y1 - y0), 2),
                    ],
                    "area": round(polygon_area(poly), 2),
                }
            )
    if dropped:
        logger.warning(
            "LT-Shapes %s: %d planned objects could not be placed and were dropped", split, dropped
        )
    return {
        "info": dict(info, split=split),
        "licenses": [],
        "images": images,
        "annotations": annotations,
    }


def _category_entries(train_annotations: List[dict]) -> List[dict]:
    img_sets: Dict[int, set] = {c["id"]: set() for c in LT_SHAPES_CATEGORIES}
    inst: Dict[int, int] = {c["id"]: 0 for c in LT_SHAPES_CATEGORIES}
    for a in train_annotations:
        img_sets[a["category_id"]].add(a["image_id"])
        inst[a["category_id"]] += 1
    out = []
    for c in LT_SHAPES_CATEGORIES:
        n = len(img_sets[c["id"]])
        out.append(
            {
                "id": c["id"],
                "name": c["name"],
                "synset": c["synset"],
                "synonyms": [c["name"]],
                "def": c["def"],
                "frequency": frequency_group_of(n),
                "image_count": n,
                "instance_count": inst[c["id"]],
                "shape": c["shape"],
                "color": c["color"],
            }
        )
    return out


def _group_table(categories: List[dict], val_instances: Dict[int, int]) -> Dict[str, dict]:
    groups = {}
    for g in ("r", "c", "f"):
        cats = [c for c in categories if c["frequency"] == g]
        counts = [c["image_count"] for c in cats]
        groups[g] = {
            "categories": len(cats),
            "names": [c["name"] for c in cats],
            "train_image_count_min": min(counts) if counts else 0,
            "train_image_count_max": max(counts) if counts else 0,
            "train_instances": sum(c["instance_count"] for c in cats),
            "val_instances": sum(val_instances.get(c["id"], 0) for c in cats),
            "val_instances_min": min((val_instances.get(c["id"], 0) for c in cats), default=0),
        }
    return groups


def _summary(root: str, stats: dict, skipped: bool, seconds: float) -> dict:
    p = stats["params"]
    val_inst = {int(k): v for k, v in stats["val_instance_count"].items()}
    return {
        "root": root,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "seed": p["seed"],
        "num_train": p["num_train"],
        "num_val": p["num_val"],
        "image_size": p["image_size"],
        "num_train_instances": sum(c["instance_count"] for c in stats["categories"]),
        "num_val_instances": sum(val_inst.values()),
        "groups": _group_table(stats["categories"], val_inst),
    }


def generate_lt_shapes(
    root: str,
    *,
    seed: int = 0,
    num_train: Optional[int] = None,
    num_val: Optional[int] = None,
    image_size: Optional[int] = None,
    preset: Optional[str] = None,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """Generate LT-Shapes into ``root`` and return a small summary dict.

    Sizes come from ``preset`` ("default": 800 train / 200 val images of 128x128;
    "tiny": 200 / 64 of 64x64); ``num_train``, ``num_val`` and ``image_size`` override it.
    Output is deterministic: the same seed and sizes give byte-identical files (with the
    same numpy/OpenCV builds).  Everything is written to a temporary sibling directory that
    is renamed to ``root`` at the end, so an interrupted run never leaves a dataset that
    looks complete.  If ``root`` already holds a dataset with the same parameters nothing
    is done (``summary["skipped"]`` is True) unless ``overwrite``; a dataset with other
    parameters raises ``FileExistsError`` unless ``overwrite``.

    Summary keys: root, skipped, seconds, seed, num_train, num_val, image_size,
    num_train_instances, num_val_instances, groups ({'r'|'c'|'f': {categories, names,
    train_image_count_min/max, train_instances, val_instances, val_instances_min}}).
    """
    t0 = time.perf_counter()
    sizes = _resolve_sizes(num_train, num_val, image_size, preset)
    params = _params(seed, sizes)
    root = os.path.abspath(os.fspath(root))

    existing = read_json(os.path.join(root, PARAMS_JSON)) if os.path.isdir(root) else None
    if (
        existing is not None
        and _is_complete(root)
        and existing.get("params") == params
        and not overwrite
    ):
        if verbose:
            print(f"[lt_shapes] {root} already holds this dataset (seed {seed}); skipping")
        return _summary(root, existing, True, time.perf_counter() - t0)
    if os.path.exists(root) and not overwrite:
        if not os.path.isdir(root):
            raise FileExistsError(f"{root} exists and is not a directory")
        if existing is not None:
            raise FileExistsError(
                f"{root} holds an LT-Shapes dataset generated with other parameters "
                f"({existing.get('params')}); pass overwrite=True (CLI: --overwrite) to replace it"
            )
        if os.listdir(root):
            raise FileExistsError(
                f"{root} exists, is not empty and is not a complete LT-Shapes dataset; remove it "
                f"or "
                "pass overwrite=True (CLI: --overwrite)"
            )

    plan = plan_lt_shapes(
        seed, sizes["num_train"], sizes["num_val"], sizes["min_objects"], sizes["max_objects"]
    )
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    # A unique hidden sibling (same filesystem, so the final rename is atomic); os.mkdir
    # honours the umask, unlike tempfile.mkdtemp's 0700.
    tmp = os.path.join(
        parent, f".{os.path.basename(root)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )
    os.mkdir(tmp)
    old = None
    try:
        info = {
            "description": "LT-Shapes synthetic long-tailed detection dataset",
            "params": params,
        }
        splits = {}
        for split in SPLITS:
            ts = time.perf_counter()
            splits[split] = _write_split(tmp, split, plan[split], seed, sizes, info)
            if verbose:
                print(
                    f"[lt_shapes] {split}: {len(splits[split]['images'])} images, "
                    f"{len(splits[split]['annotations'])} instances "
                    f"({time.perf_counter() - ts:.1f}s)",
                    flush=True,
                )
        categories = _category_entries(splits["train"]["annotations"])
        planned = plan["train_image_counts"]
        mismatch = [c["name"] for c in categories if c["image_count"] != planned[c["id"]]]
        if mismatch:
            logger.warning("LT-Shapes: train image counts differ from the plan for %s", mismatch)
        val_inst = {c["id"]: 0 for c in LT_SHAPES_CATEGORIES}
        for a in splits["val"]["annotations"]:
            val_inst[a["category_id"]] += 1
        for split, fname in (("train", TRAIN_JSON), ("val", VAL_JSON)):
            data = dict(splits[split])
            data["categories"] = categories  # LVIS puts the train statistics in both files
            with open(os.path.join(tmp, fname), "w") as f:
                json.dump(data, f, separators=(",", ":"))
        stats = {
            "params": params,
            "categories": categories,
            "val_instance_count": {str(k): v for k, v in val_inst.items()},
        }
        # params.json is written last: its presence marks a complete dataset.
        with open(os.path.join(tmp, PARAMS_JSON), "w") as f:
            json.dump(stats, f, indent=1)
        if os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)
        elif os.path.lexists(root):
            old = tmp + ".old"
            os.rename(root, old)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(root) and os.path.exists(old):
            os.rename(old, root)  # put the previous dataset back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return _summary(root, stats, False, time.perf_counter() - t0)


def format_summary(summary: dict) -> str:
    """Human-readable per-group table of a :func:`generate_lt_shapes` summary."""
    head = (
        f"LT-Shapes at {summary['root']}: seed {summary['seed']}, {summary['num_train']} train / "
        f"{summary['num_val']} val images of {summary['image_size']}x{summary['image_size']}, "
        + (
            "already present (skipped)"
            if summary["skipped"]
            else f"generated in {summary['seconds']:.1f}s"
        )
    )
    rows = [
        f"{'group':<10} {'#cats':>5} {'train imgs/cat':>15} {'train inst':>10} {'val inst':>9} "
        f"{'val inst/cat min':>16}",
    ]
    labels = {"r": "rare", "c": "common", "f": "frequent"}
    tot = [0, 0, 0]
    for g in ("r", "c", "f"):
        s = summary["groups"][g]
        rng = (
            f"{s['train_image_count_min']}-{s['train_image_count_max']}" if s["categories"] else "-"
        )
        rows.append(
            f"{labels[g]:<10} {s['categories']:>5} {rng:>15} {s['train_instances']:>10} "
            f"{s['val_instances']:>9} {s['val_instances_min']:>16}"
        )
        tot = [tot[0] + s["categories"], tot[1] + s["train_instances"], tot[2] + s["val_instances"]]
    rows.append(f"{'total':<10} {tot[0]:>5} {'':>15} {tot[1]:>10} {tot[2]:>9}")
    return "\n".join([head] + rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m " + GENERATE_MODULE,
        description="Generate the LT-Shapes long-tailed detection dataset (LVIS v1 format).",
    )
    parser.add_argument(
        "--root", default=None, help="output directory (default: $DETECTRON2_DATASETS/lt_shapes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="size preset (default: default)"
    )
    parser.add_argument(
        "--num-train", type=int, default=None, help="number of train images (overrides the preset)"
    )
    parser.add_argument(
        "--num-val", type=int, default=None, help="number of val images (overrides the preset)"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="image side in pixels (overrides the preset)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument(
        "--per-category", action="store_true", help="also list the categories of every group"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    root = args.root if args.root is not None else default_root(args.preset)
    summary = generate_lt_shapes(
        root,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        preset=args.preset,
        overwrite=args.overwrite,
        verbose=not args.quiet,
    )
    print(format_summary(summary))
    if args.per_category:
        for g in ("f", "c", "r"):
            print(f"{g}: {', '.join(summary['groups'][g]['names'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
