"""LT-Shapes: a small, deterministic, long-tailed detection dataset in LVIS v1 format.

LT-Shapes is a synthetic stand-in for LVIS that is small enough to train on a CPU.
It has 32 categories (8 shape families x 4 colours).  Their numbers of TRAIN images
follow LVIS's frequency groups (rare: 1-10 images, common: 11-100, frequent: >100),
and inside every shape family head and tail colours that look alike sit side by side
(``circle_red`` is frequent, ``circle_orange`` is rare), so a detector trained on it
is biased toward the head classes the way it is on LVIS.  The annotation files are
LVIS v1 JSON, so Detectron2's ``LVISEvaluator`` reports AP, AP50, AP75, APr, APc and APf.

Generation has two stages:

1. :func:`plan_lt_shapes` is a pure, cheap function of the seed and the split sizes.  It
   fixes the number of objects in every image and which categories they belong to
   (train: a Zipf-like curve per frequency group; val: roughly class-balanced).
2. :func:`generate_lt_shapes` draws the images that the plan describes (background,
   shapes, occlusion control), writes PNGs and the LVIS JSON files into a temporary
   directory, and renames that directory to ``root`` in one step.

Layout of a generated dataset (``image_root`` is ``root`` for both splits)::

    root/lt_shapes_train.json    root/train/000001.png ...
    root/lt_shapes_val.json      root/val/000001.png ...
    root/params.json             (generation parameters + category statistics; written last)

Command line: ``python -m libra_d2.data.lt_shapes --root datasets/lt_shapes``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = [
    "LT_SHAPES_CATEGORIES",
    "LT_SHAPES_COLORS",
    "LT_SHAPES_SHAPES",
    "PRESETS",
    "LTShapesNotFoundError",
    "default_root",
    "frequency_of",
    "lt_shapes_category_names",
    "plan_lt_shapes",
    "target_train_image_counts",
    "generate_lt_shapes",
    "load_lt_shapes_json",
    "register_lt_shapes",
    "main",
]

logger = logging.getLogger(__name__)

# Bump when the drawing or planning code changes in a way that changes the output:
# an existing dataset made by another version is then not silently reused.
GENERATOR_VERSION = 1

TRAIN_JSON = "lt_shapes_train.json"
VAL_JSON = "lt_shapes_val.json"
PARAMS_JSON = "params.json"
SPLITS = ("train", "val")
DATASET_NAMES = {"train": "lt_shapes_train", "val": "lt_shapes_val"}

# LVIS frequency groups, defined on the number of TRAIN images containing the category.
RARE_MAX_IMAGES = 10  # rare: 1..10
COMMON_MAX_IMAGES = 100  # common: 11..100, frequent: > 100

MIN_OBJECTS = 2
MAX_OBJECTS = 6
MIN_REL_SIZE = 0.10  # object size (extent before rotation) relative to the image side
MAX_REL_SIZE = 0.50
MAX_OCCLUDED_FRACTION = 0.70  # an object may lose at most 70% of its pixels to others

PRESETS: Dict[str, Dict[str, int]] = {
    # ~1000 images of 128x128; a few seconds to generate on 2 cores.
    "default": {"num_train": 800, "num_val": 200, "image_size": 128},
    # For unit tests: well under a second.  Still 6 frequent / 12 common / 14 rare
    # categories (a frequent category needs > 100 train images, hence 200 of them).
    "tiny": {"num_train": 200, "num_val": 64, "image_size": 64},
}

# --------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------

LT_SHAPES_SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross")

# RGB.  Colours come in look-alike pairs (red/orange, blue/purple, green/teal, yellow/lime);
# every pair of colours is at least ~65 apart in RGB so they remain separable by a
# detector, while per-instance jitter is kept well below half that distance.
LT_SHAPES_COLORS: Dict[str, tuple] = {
    "red": (205, 45, 45),
    "orange": (230, 115, 40),
    "blue": (45, 75, 205),
    "purple": (120, 60, 200),
    "green": (45, 155, 60),
    "teal": (35, 150, 135),
    "yellow": (225, 205, 45),
    "lime": (160, 210, 50),
}
_COLOR_PAIR = {
    "red": "orange",
    "orange": "red",
    "blue": "purple",
    "purple": "blue",
    "green": "teal",
    "teal": "green",
    "yellow": "lime",
    "lime": "yellow",
}

# (shape, colour, planned group).  The group is the one the rank table below gives; the
# category's actual `frequency` is always recomputed from the generated train split.
# In every family a head (frequent or common) colour is paired with a look-alike rare one.
_CATEGORY_TABLE = (
    ("circle", "red", "f"),
    ("circle", "orange", "r"),
    ("circle", "blue", "c"),
    ("circle", "purple", "r"),
    ("square", "teal", "f"),
    ("square", "green", "r"),
    ("square", "yellow", "c"),
    ("square", "lime", "r"),
    ("triangle", "orange", "f"),
    ("triangle", "red", "r"),
    ("triangle", "green", "c"),
    ("triangle", "teal", "c"),
    ("diamond", "purple", "f"),
    ("diamond", "blue", "r"),
    ("diamond", "lime", "c"),
    ("diamond", "yellow", "r"),
    ("pentagon", "yellow", "f"),
    ("pentagon", "lime", "r"),
    ("pentagon", "red", "c"),
    ("pentagon", "orange", "r"),
    ("hexagon", "blue", "f"),
    ("hexagon", "purple", "r"),
    ("hexagon", "teal", "c"),
    ("hexagon", "green", "c"),
    ("star", "red", "c"),
    ("star", "orange", "r"),
    ("star", "purple", "c"),
    ("star", "blue", "r"),
    ("cross", "green", "c"),
    ("cross", "teal", "r"),
    ("cross", "lime", "c"),
    ("cross", "yellow", "r"),
)

# Frequency rank (0 = most train images) -> category name.  Fixed, independent of the seed,
# so a category is in the same group for every seed (and the README can list the groups).
_RANK_ORDER = (
    # frequent (6)
    "circle_red",
    "square_teal",
    "hexagon_blue",
    "triangle_orange",
    "pentagon_yellow",
    "diamond_purple",
    # common (12)
    "star_red",
    "circle_blue",
    "cross_green",
    "triangle_green",
    "square_yellow",
    "hexagon_teal",
    "diamond_lime",
    "pentagon_red",
    "star_purple",
    "cross_lime",
    "triangle_teal",
    "hexagon_green",
    # rare (14)
    "circle_orange",
    "square_green",
    "diamond_blue",
    "star_orange",
    "pentagon_lime",
    "cross_teal",
    "triangle_red",
    "hexagon_purple",
    "circle_purple",
    "square_lime",
    "diamond_yellow",
    "pentagon_orange",
    "star_blue",
    "cross_yellow",
)
_GROUP_SIZES = {"f": 6, "c": 12, "r": 14}


def _build_categories() -> tuple:
    rank_of = {name: r for r, name in enumerate(_RANK_ORDER)}
    cats = []
    for idx, (shape, color, group) in enumerate(_CATEGORY_TABLE):
        name = f"{shape}_{color}"
        partner = f"{shape}_{_COLOR_PAIR[color]}"
        cats.append(
            {
                "id": idx + 1,
                "name": name,
                "shape": shape,
                "color": color,
                "rgb": LT_SHAPES_COLORS[color],
                "synset": f"shape.{name}",
                "def": f"a {color} {shape} drawn on a textured background",
                "rank": rank_of[name],
                "planned_frequency": group,
                "confusable_with": partner,
            }
        )
    return tuple(cats)


#: One dict per category, in contiguous order (``id`` 1..32 -> Detectron2 class id ``id-1``).
#: Keys: id, name, shape, color, rgb, synset, def, rank, planned_frequency, confusable_with.
LT_SHAPES_CATEGORIES = _build_categories()
NUM_CLASSES = len(LT_SHAPES_CATEGORIES)


def _check_category_table() -> None:
    names = [c["name"] for c in LT_SHAPES_CATEGORIES]
    assert len(set(names)) == len(names) == len(_RANK_ORDER) == NUM_CLASSES
    assert sorted(names) == sorted(_RANK_ORDER)
    start = 0
    for group in ("f", "c", "r"):
        n = _GROUP_SIZES[group]
        for name in _RANK_ORDER[start : start + n]:
            assert LT_SHAPES_CATEGORIES[names.index(name)]["planned_frequency"] == group, name
        start += n


_check_category_table()


def lt_shapes_category_names() -> List[str]:
    """Class names in contiguous (Detectron2) order."""
    return [c["name"] for c in LT_SHAPES_CATEGORIES]


def frequency_of(image_count: int) -> str:
    """LVIS frequency group of a category from its number of train images."""
    if image_count <= RARE_MAX_IMAGES:
        return "r"
    if image_count <= COMMON_MAX_IMAGES:
        return "c"
    return "f"


# --------------------------------------------------------------------------------------
# Plan (pure functions, no drawing)
# --------------------------------------------------------------------------------------


def _power_law(hi: float, lo: float, n: int) -> List[int]:
    """n non-increasing integers from hi down to lo following (j+1)^-s (a Zipf curve)."""
    if n == 1:
        return [int(round(hi))]
    s = math.log(hi / lo) / math.log(n) if hi > lo else 0.0
    vals = [int(round(hi * (j + 1) ** (-s))) for j in range(n)]
    vals = [min(int(round(hi)), max(int(round(lo)), v)) for v in vals]
    for j in range(1, n):
        vals[j] = min(vals[j], vals[j - 1])
    return vals


def target_train_image_counts(num_train: int) -> Dict[int, int]:
    """Per-category target number of train images (category id -> count).

    A Zipf-like curve inside each frequency group, clipped to the group's range with a
    small margin from the boundaries: frequent from ~0.55*num_train down to 110, common
    from min(95, 0.12*num_train) down to 12, rare from 10 down to 2.  Counts never exceed
    ``num_train`` (:func:`plan_lt_shapes` needs at least 147 train images to fit them).
    """
    n = int(num_train)
    if n < 1:
        raise ValueError("num_train must be >= 1")
    lo_f = 110
    hi_f = max(lo_f, int(round(0.55 * n)))
    lo_c = 12
    hi_c = min(95, max(lo_c, int(round(0.12 * n))))
    lo_r, hi_r = 2, RARE_MAX_IMAGES
    per_rank = (
        _power_law(hi_f, lo_f, _GROUP_SIZES["f"])
        + _power_law(hi_c, lo_c, _GROUP_SIZES["c"])
        + _power_law(hi_r, lo_r, _GROUP_SIZES["r"])
    )
    per_rank = [max(1, min(n, v)) for v in per_rank]
    by_name = {c["name"]: c["id"] for c in LT_SHAPES_CATEGORIES}
    return {by_name[name]: per_rank[r] for r, name in enumerate(_RANK_ORDER)}


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *keys])))


_SPLIT_KEY = {"train": 1, "val": 2}


def _assign_categories(
    num_images: int,
    targets: Dict[int, int],
    dup_weights: Dict[int, float],
    rng: np.random.Generator,
    split: str,
) -> List[List[int]]:
    """Give every image a list of category ids so that category c occurs in exactly
    ``targets[c]`` images (when possible); the rest of each image's slots are extra
    instances of categories already in that image.  Distinct categories come first."""
    cat_ids = sorted(targets)
    total = sum(targets.values())
    if max(targets.values()) > num_images:
        raise ValueError(f"{split}: a category needs {max(targets.values())} images but there are {num_images}")
    slots = rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1, size=num_images)
    if int(slots.sum()) < total:
        if total > num_images * MAX_OBJECTS:
            raise ValueError(
                f"{split}: {num_images} images x {MAX_OBJECTS} objects cannot hold the {total} "
                "(image, category) pairs the long-tail plan needs; use more images"
            )
        # Add slots to random images (that are not yet full) until the plan fits.
        while int(slots.sum()) < total:
            open_ = np.flatnonzero(slots < MAX_OBJECTS)
            need = total - int(slots.sum())
            pick = rng.choice(open_, size=min(need, len(open_)), replace=False)
            slots[pick] += 1
    order = sorted(cat_ids, key=lambda c: (-targets[c], c))

    def place(greedy: bool):
        remaining = slots.astype(np.int64).copy()
        present: List[List[int]] = [[] for _ in range(num_images)]
        # Largest demand first.  Images that have no category yet are served first, then
        # either images are drawn with probability proportional to their free slots
        # (weighted sampling without replacement), or -- the fallback when that fails in
        # a tight plan -- the images with the most free slots are taken (random ties),
        # a greedy order that realises any feasible set of counts (Gale-Ryser).
        for c in order:
            t = targets[c]
            avail = np.flatnonzero(remaining > 0)
            if len(avail) < t:
                return None
            u = rng.random(len(avail))
            empty = np.array([not present[i] for i in avail.tolist()], dtype=np.float64)
            if greedy:
                key = remaining[avail] + u * 0.999 + empty * (MAX_OBJECTS + 1)
            else:
                key = np.log(np.maximum(u, 1e-300)) / remaining[avail] + empty * 1e6
            chosen = avail[np.argsort(-key, kind="stable")[:t]]
            for i in chosen.tolist():
                present[i].append(c)
            remaining[chosen] -= 1
        return remaining, present

    placed = place(greedy=False)
    if placed is None:
        placed = place(greedy=True)
    if placed is None:
        raise ValueError(f"{split}: not enough free object slots for the long-tail plan; use more images")
    remaining, present = placed
    weight_ids = np.array(cat_ids)
    weights = np.array([dup_weights[c] for c in cat_ids], dtype=np.float64)
    result: List[List[int]] = []
    for i in range(num_images):
        cats = list(present[i])
        if not cats:
            # Happens only when the plan has fewer pairs than images: give the image one
            # object of a category drawn by weight (this adds an image to that category).
            cats.append(int(rng.choice(weight_ids, p=weights / weights.sum())))
            remaining[i] = slots[i] - 1
        # Rarest (smallest target) first: these are placed first and never dropped.
        cats.sort(key=lambda c: (targets[c], c))
        extra = int(remaining[i])
        if extra > 0:
            w = np.array([dup_weights[c] for c in cats], dtype=np.float64)
            dups = rng.choice(np.array(cats), size=extra, replace=True, p=w / w.sum())
            cats.extend(int(d) for d in dups)
        result.append(cats)
    return result


def plan_lt_shapes(seed: int = 0, num_train: int = 800, num_val: int = 200) -> Dict[str, object]:
    """Decide, without drawing anything, which categories every image contains.

    Returns ``{"train": [[cat_id, ...], ...], "val": [...], "train_targets": {id: n},
    "train_image_counts": {id: n}, "val_image_counts": {id: n}, "frequency": {id: 'r'|'c'|'f'}}``.
    Each image's list holds one entry per object; distinct categories come first (rarest
    first), followed by extra instances of categories already in the image.
    ``train_image_counts`` is what the generated train split will contain (the drawing
    stage never drops the first instance of a category, see :func:`generate_lt_shapes`).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError("num_train and num_val must be >= 1")
    targets = target_train_image_counts(num_train)
    if sum(targets.values()) > num_train * MAX_OBJECTS:
        need = num_train
        while sum(target_train_image_counts(need).values()) > need * MAX_OBJECTS:
            need += 1
        raise ValueError(
            f"LT-Shapes needs at least {need} train images to realise its long-tailed plan "
            f"(6 frequent categories with > 100 images each, at most {MAX_OBJECTS} objects per image); "
            f"got num_train={num_train}"
        )
    train = _assign_categories(
        num_train, targets, {c: float(t) for c, t in targets.items()}, _rng(seed, _SPLIT_KEY["train"], 0), "train"
    )
    # Validation: roughly class-balanced so that every category (rare ones included) has
    # enough instances to measure AP.  Each category gets the same number of images,
    # sized to fill ~80% of the expected object slots with distinct categories.
    min_val = -(-NUM_CLASSES // MAX_OBJECTS)
    if num_val < min_val:
        raise ValueError(f"LT-Shapes needs at least {min_val} val images to show every category; got num_val={num_val}")
    val_rng = _rng(seed, _SPLIT_KEY["val"], 0)
    expected_slots = num_val * (MIN_OBJECTS + MAX_OBJECTS) / 2.0
    per_cat = int(max(1, min(num_val, math.floor(0.8 * expected_slots / NUM_CLASSES))))
    val_targets = {c["id"]: per_cat for c in LT_SHAPES_CATEGORIES}
    val = _assign_categories(num_val, val_targets, {c: 1.0 for c in val_targets}, val_rng, "val")

    def image_counts(images: List[List[int]]) -> Dict[int, int]:
        counts = {c["id"]: 0 for c in LT_SHAPES_CATEGORIES}
        for cats in images:
            for c in set(cats):
                counts[c] += 1
        return counts

    train_counts = image_counts(train)
    return {
        "train": train,
        "val": val,
        "train_targets": targets,
        "train_image_counts": train_counts,
        "val_image_counts": image_counts(val),
        "frequency": {c: frequency_of(n) for c, n in train_counts.items()},
    }


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (K, 2) of a shape of extent ~1 centred at the origin."""

    def regular(k: int, r: float, phase: float = -math.pi / 2) -> np.ndarray:
        a = phase + 2 * math.pi * np.arange(k) / k
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)

    if shape == "circle":
        return regular(32, 0.5)
    if shape == "square":
        return np.array([[-0.45, -0.45], [0.45, -0.45], [0.45, 0.45], [-0.45, 0.45]])
    if shape == "triangle":
        return regular(3, 0.55)
    if shape == "diamond":
        return np.array([[0.0, -0.5], [0.3, 0.0], [0.0, 0.5], [-0.3, 0.0]])
    if shape == "pentagon":
        return regular(5, 0.5)
    if shape == "hexagon":
        return regular(6, 0.5)
    if shape == "star":
        outer = regular(5, 0.55)
        inner = regular(5, 0.23, phase=-math.pi / 2 + math.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(-1, 2)
    if shape == "cross":
        a, b = 0.5, 0.17
        return np.array(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        )
    raise ValueError(f"unknown shape {shape!r}")


_UNIT_POLYGONS = {s: _unit_polygon(s) for s in LT_SHAPES_SHAPES}
_SHIFT = 4  # cv2 fixed-point bits: polygons are rasterised with 1/16 pixel precision


def _to_cv_points(poly: np.ndarray) -> np.ndarray:
    # JSON polygons use the COCO convention (pixel (x, y) covers [x, x+1) x [y, y+1));
    # cv2 puts integer coordinates at pixel centres, hence the -0.5.
    return np.round((poly - 0.5) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _sample_polygon(shape: str, image_size: int, rng: np.random.Generator, max_rel: float) -> np.ndarray:
    s = float(image_size)
    lo, hi = MIN_REL_SIZE * s, max(MIN_REL_SIZE, max_rel) * s
    size = math.exp(rng.uniform(math.log(lo), math.log(hi)))  # log-uniform: more small objects
    aspect = rng.uniform(0.85, 1.15)
    theta = rng.uniform(0.0, 2 * math.pi)
    poly = _UNIT_POLYGONS[shape] * np.array([size * aspect, size / aspect])
    c, si = math.cos(theta), math.sin(theta)
    poly = poly @ np.array([[c, si], [-si, c]])
    mn, mx = poly.min(axis=0), poly.max(axis=0)
    extent = mx - mn
    if (extent > s - 1).any():  # never happens with MAX_REL_SIZE=0.5, kept for safety
        poly = poly * ((s - 1) / extent.max())
        mn, mx = poly.min(axis=0), poly.max(axis=0)
    t = np.array([rng.uniform(-mn[0], s - mx[0]), rng.uniform(-mn[1], s - mx[1])])
    poly = np.clip(np.round(poly + t, 2), 0.0, s)
    return poly


def _background(image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Mildly textured grey background (float64, RGB): tinted grey + smooth blotches."""
    import cv2

    s = image_size
    base = rng.uniform(95.0, 165.0) + rng.uniform(-12.0, 12.0, size=3)
    grid = rng.normal(0.0, 14.0, size=(5, 5, 3))
    # Bilinear upsampling of the 5x5 grid, done in numpy (platform independent).
    pos = (np.arange(s) + 0.5) / s * 4.0
    i0 = np.clip(np.floor(pos).astype(int), 0, 3)
    f = pos - i0
    interp = np.zeros((s, 5))
    interp[np.arange(s), i0] = 1.0 - f
    interp[np.arange(s), i0 + 1] = f
    img = base + np.stack([interp @ grid[:, :, ch] @ interp.T for ch in range(3)], axis=2)
    # A few faint straight lines as clutter.
    n_lines = int(rng.integers(0, 4))
    if n_lines:
        layer = np.zeros((s, s), dtype=np.uint8)
        for _ in range(n_lines):
            p1 = tuple(int(v) for v in rng.integers(0, s, size=2))
            p2 = tuple(int(v) for v in rng.integers(0, s, size=2))
            cv2.line(layer, p1, p2, 1, thickness=max(1, s // 64), lineType=cv2.LINE_8)
        img = img + layer[:, :, None] * rng.uniform(-22.0, 22.0)
    return img


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _render_image(cat_ids: Sequence[int], image_size: int, rng: np.random.Generator):
    """Draw one image.  Returns (BGR uint8 image, objects in draw order, #dropped first instances)."""
    import cv2

    s = image_size
    cat_by_id = {c["id"]: c for c in LT_SHAPES_CATEGORIES}
    img = _background(s, rng)
    placed: List[dict] = []  # each: cat, poly, mask, area, z
    seen: set = set()
    dropped_first = 0

    def visible_fractions(objs: List[dict]) -> np.ndarray:
        label = np.full((s, s), -1, dtype=np.int64)
        for k in sorted(range(len(objs)), key=lambda k: objs[k]["z"]):
            label[objs[k]["mask"]] = k
        counts = np.bincount(label.ravel() + 1, minlength=len(objs) + 1)[1:]
        return counts / np.array([o["area"] for o in objs], dtype=np.float64)

    for cat_id in cat_ids:
        first = cat_id not in seen
        shape = cat_by_id[cat_id]["shape"]
        ok = False
        tries = 40 if first else 20
        for attempt in range(tries):
            # Shrink the largest allowed size when placements keep failing.
            max_rel = MAX_REL_SIZE - (MAX_REL_SIZE - MIN_REL_SIZE) * min(1.0, attempt / (0.75 * tries))
            poly = _sample_polygon(shape, s, rng, max_rel)
            mask8 = np.zeros((s, s), dtype=np.uint8)
            cv2.fillPoly(mask8, [_to_cv_points(poly)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
            mask = mask8.astype(bool)
            area = int(mask.sum())
            if area < 4:
                continue
            # The first instance of a category on a late attempt goes on top (always visible).
            z = float(rng.random()) if (attempt < tries // 2 or not first) else 2.0 + len(placed)
            cand = {"cat": cat_id, "poly": poly, "mask": mask, "area": area, "z": z}
            vis = visible_fractions(placed + [cand])
            if (vis >= 1.0 - MAX_OCCLUDED_FRACTION).all():
                placed.append(cand)
                ok = True
                break
        if ok:
            seen.add(cat_id)
        elif first:
            dropped_first += 1

    placed.sort(key=lambda o: o["z"])
    for o in placed:
        rgb = np.array(cat_by_id[o["cat"]]["rgb"], dtype=np.float64)
        color = rgb * rng.uniform(0.93, 1.07) + rng.uniform(-8.0, 8.0, size=3)
        color = np.clip(np.round(color), 0, 255)
        layer = np.zeros((s, s), dtype=np.uint8)
        cv2.fillPoly(layer, [_to_cv_points(o["poly"])], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        alpha = (layer.astype(np.float64) / 255.0)[:, :, None]
        img = img * (1.0 - alpha) + color * alpha
        # A slightly darker 1-pixel rim centred on the polygon boundary keeps overlapping
        # objects of the same colour apart.
        rim = np.zeros((s, s), dtype=np.uint8)
        cv2.polylines(rim, [_to_cv_points(o["poly"])], True, 255, thickness=1, lineType=cv2.LINE_AA, shift=_SHIFT)
        beta = (rim.astype(np.float64) / 255.0)[:, :, None] * 0.6
        img = img * (1.0 - beta) + (color * 0.65) * beta
    img = img + rng.normal(0.0, 4.0, size=img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, ::-1]), placed, dropped_first


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


def _resolve_sizes(num_train, num_val, image_size, preset) -> Dict[str, int]:
    if preset is None:
        preset = "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    sizes = dict(PRESETS[preset])
    for key, val in (("num_train", num_train), ("num_val", num_val), ("image_size", image_size)):
        if val is not None:
            sizes[key] = int(val)
    if sizes["image_size"] < 32:
        raise ValueError("image_size must be >= 32")
    if sizes["num_train"] < 1 or sizes["num_val"] < 1:
        raise ValueError("num_train and num_val must be >= 1")
    return sizes


def _params(seed: int, sizes: Dict[str, int]) -> Dict[str, object]:
    return {
        "generator": "libra_d2.data.lt_shapes",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "num_train": sizes["num_train"],
        "num_val": sizes["num_val"],
        "image_size": sizes["image_size"],
        "min_objects": MIN_OBJECTS,
        "max_objects": MAX_OBJECTS,
    }


def _read_json(path: str):
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_complete(root: str) -> bool:
    return all(os.path.isfile(os.path.join(root, n)) for n in (PARAMS_JSON, TRAIN_JSON, VAL_JSON))


def _write_split(
    out_dir: str,
    split: str,
    plan_images: List[List[int]],
    seed: int,
    image_size: int,
    info: dict,
) -> dict:
    """Draw and write one split into out_dir; returns the LVIS dict without categories."""
    import cv2

    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    all_ids = [c["id"] for c in LT_SHAPES_CATEGORIES]
    dropped = 0
    for idx, cat_ids in enumerate(plan_images):
        image_id = idx + 1
        rng = _rng(seed, _SPLIT_KEY[split], 1, image_id)
        img, objs, n_drop = _render_image(cat_ids, image_size, rng)
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
                    "area": round(_polygon_area(poly), 2),
                }
            )
    if dropped:
        logger.warning("LT-Shapes %s: %d planned objects could not be placed and were dropped", split, dropped)
    return {"info": dict(info, split=split), "licenses": [], "images": images, "annotations": annotations}


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
                "frequency": frequency_of(n),
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

    existing = _read_json(os.path.join(root, PARAMS_JSON)) if os.path.isdir(root) else None
    if existing is not None and _is_complete(root) and existing.get("params") == params and not overwrite:
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
                f"{root} exists, is not empty and is not a complete LT-Shapes dataset; remove it or "
                "pass overwrite=True (CLI: --overwrite)"
            )

    plan = plan_lt_shapes(seed, sizes["num_train"], sizes["num_val"])
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    # A unique hidden sibling (same filesystem, so the final rename is atomic); os.mkdir
    # honours the umask, unlike tempfile.mkdtemp's 0700.
    tmp = os.path.join(parent, f".{os.path.basename(root)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    old = None
    try:
        info = {"description": "LT-Shapes synthetic long-tailed detection dataset", "params": params}
        splits = {}
        for split in SPLITS:
            ts = time.perf_counter()
            splits[split] = _write_split(tmp, split, plan[split], seed, sizes["image_size"], info)
            if verbose:
                print(
                    f"[lt_shapes] {split}: {len(splits[split]['images'])} images, "
                    f"{len(splits[split]['annotations'])} instances ({time.perf_counter() - ts:.1f}s)",
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


# --------------------------------------------------------------------------------------
# Detectron2 registration
# --------------------------------------------------------------------------------------


class LTShapesNotFoundError(FileNotFoundError):
    """The LT-Shapes files are missing: they have to be generated first."""


def default_root() -> str:
    """``$DETECTRON2_DATASETS/lt_shapes`` (``datasets/lt_shapes`` when the variable is unset)."""
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "lt_shapes")


def _generate_hint(root: str) -> str:
    return f"Generate it with `make data` or `python -m libra_d2.data.lt_shapes --root {root}`."


def _validate_json(json_file: str, image_root: str) -> None:
    if not os.path.isfile(json_file):
        raise LTShapesNotFoundError(f"LT-Shapes annotation file not found: {json_file}. {_generate_hint(image_root)}")
    data = _read_json(json_file)
    if not isinstance(data, dict):
        raise ValueError(
            f"LT-Shapes annotation file {json_file} is not a valid JSON object. {_generate_hint(image_root)}"
        )
    if not data.get("images"):
        raise ValueError(f"LT-Shapes annotation file {json_file} has no images. {_generate_hint(image_root)}")
    if not data.get("annotations"):
        raise ValueError(f"LT-Shapes annotation file {json_file} has no annotations. {_generate_hint(image_root)}")
    if not data.get("categories"):
        raise ValueError(f"LT-Shapes annotation file {json_file} has no categories. {_generate_hint(image_root)}")
    for img in data["images"]:
        path = os.path.join(image_root, img["file_name"])
        if not os.path.isfile(path):
            raise LTShapesNotFoundError(
                f"LT-Shapes image {path} (listed in {json_file}) is missing. "
                f"{_generate_hint(image_root)} (add --overwrite to regenerate)"
            )


def load_lt_shapes_json(json_file: str, image_root: str) -> List[dict]:
    """Detectron2 dataset dicts of one split (category ids 0..C-1), via Detectron2's own
    ``load_lvis_json``.  Raises :class:`LTShapesNotFoundError` (a ``FileNotFoundError``)
    when the file or an image is missing and ``ValueError`` when the file is empty."""
    _validate_json(json_file, image_root)
    from detectron2.data.datasets.lvis import load_lvis_json

    # load_lvis_json (Detectron2 v0.6) concatenates image_root and the split folder taken
    # from coco_url without a separator, so image_root must end with one; later versions
    # join image_root and file_name, which works with the trailing separator as well.
    return load_lvis_json(json_file, os.path.join(image_root, ""), dataset_name=None)


def _category_stats(root: str) -> List[dict]:
    """Per-category train statistics: from the generated data when present, otherwise
    the plan of the default-size dataset (which is what ``make data`` generates)."""
    stats = _read_json(os.path.join(root, PARAMS_JSON))
    if isinstance(stats, dict) and stats.get("categories"):
        return stats["categories"]
    data = _read_json(os.path.join(root, TRAIN_JSON))
    if isinstance(data, dict) and data.get("categories"):
        return data["categories"]
    sizes = PRESETS["default"]
    counts = plan_lt_shapes(0, sizes["num_train"], sizes["num_val"])["train_image_counts"]
    return [
        {"id": c["id"], "name": c["name"], "image_count": counts[c["id"]], "frequency": frequency_of(counts[c["id"]])}
        for c in LT_SHAPES_CATEGORIES
    ]


def _load_registered(json_file: str, image_root: str, dataset_name: str) -> List[dict]:
    dicts = load_lt_shapes_json(json_file, image_root)
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    data_cats = _read_json(json_file)["categories"]
    expect = [{"id": c["id"], "image_count": c["image_count"]} for c in data_cats]
    if getattr(meta, "class_image_count", None) != expect:
        logger.warning(
            "%s: class_image_count in the metadata does not match %s (data generated after "
            "register_lt_shapes() with other sizes?). Call register_lt_shapes() again.",
            dataset_name,
            json_file,
        )
    return dicts


def register_lt_shapes(root: Optional[str] = None) -> None:
    """Register ``lt_shapes_train`` and ``lt_shapes_val`` with Detectron2.

    Lazy: the JSON is read only when ``DatasetCatalog.get`` is called.  Idempotent: calling
    it again (with the same or another root) replaces the previous registration.
    Metadata: thing_classes, thing_colors, json_file, image_root, evaluator_type="lvis",
    class_image_count ([{"id", "image_count"}], train statistics) and category_frequency
    (['r'|'c'|'f'] in contiguous order).  The statistics are read from ``root/params.json``
    when the data exist, else they are those of the default-size plan.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = os.fspath(root) if root is not None else default_root()
    stats = {c["id"]: c for c in _category_stats(root)}
    class_image_count = [
        {"id": c["id"], "image_count": int(stats[c["id"]]["image_count"])} for c in LT_SHAPES_CATEGORIES
    ]
    category_frequency = [stats[c["id"]]["frequency"] for c in LT_SHAPES_CATEGORIES]
    for split in SPLITS:
        name = DATASET_NAMES[split]
        json_file = os.path.join(root, TRAIN_JSON if split == "train" else VAL_JSON)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, functools.partial(_load_registered, json_file, root, name))
        MetadataCatalog.get(name).set(
            thing_classes=lt_shapes_category_names(),
            thing_colors=[list(c["rgb"]) for c in LT_SHAPES_CATEGORIES],
            json_file=json_file,
            image_root=root,
            evaluator_type="lvis",
            class_image_count=class_image_count,
            category_frequency=category_frequency,
        )


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def format_summary(summary: dict) -> str:
    """Human-readable per-group table of a :func:`generate_lt_shapes` summary."""
    head = (
        f"LT-Shapes at {summary['root']}: seed {summary['seed']}, {summary['num_train']} train / "
        f"{summary['num_val']} val images of {summary['image_size']}x{summary['image_size']}, "
        + ("already present (skipped)" if summary["skipped"] else f"generated in {summary['seconds']:.1f}s")
    )
    rows = [
        f"{'group':<10} {'#cats':>5} {'train imgs/cat':>15} {'train inst':>10} {'val inst':>9} {'val inst/cat min':>16}",
    ]
    labels = {"r": "rare", "c": "common", "f": "frequent"}
    tot = [0, 0, 0]
    for g in ("r", "c", "f"):
        s = summary["groups"][g]
        rng = f"{s['train_image_count_min']}-{s['train_image_count_max']}" if s["categories"] else "-"
        rows.append(
            f"{labels[g]:<10} {s['categories']:>5} {rng:>15} {s['train_instances']:>10} "
            f"{s['val_instances']:>9} {s['val_instances_min']:>16}"
        )
        tot = [tot[0] + s["categories"], tot[1] + s["train_instances"], tot[2] + s["val_instances"]]
    rows.append(f"{'total':<10} {tot[0]:>5} {'':>15} {tot[1]:>10} {tot[2]:>9}")
    return "\n".join([head] + rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m libra_d2.data.lt_shapes",
        description="Generate the LT-Shapes long-tailed detection dataset (LVIS v1 format).",
    )
    parser.add_argument("--root", default=None, help="output directory (default: $DETECTRON2_DATASETS/lt_shapes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="size preset (default: default)")
    parser.add_argument("--num-train", type=int, default=None, help="number of train images (overrides the preset)")
    parser.add_argument("--num-val", type=int, default=None, help="number of val images (overrides the preset)")
    parser.add_argument("--image-size", type=int, default=None, help="image side in pixels (overrides the preset)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--per-category", action="store_true", help="also list the categories of every group")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    root = args.root if args.root is not None else default_root()
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
