"""LT-Shapes' scene planner: a pure, cheap function of the seed and the split sizes.

:func:`plan_lt_shapes` fixes the number of objects in every image and which categories they
belong to (train: a Zipf-like curve per frequency group; val: roughly class-balanced). The
drawing is ``lt_shapes_render``, the files ``lt_shapes_generate``.
"""

import math
from typing import Dict, List

import numpy as np

from ..frequency_groups import LVIS_RARE_MAX_IMAGES, frequency_group_of
from .lt_shapes_categories import GROUP_SIZES, LT_SHAPES_CATEGORIES, NUM_CLASSES, RANK_ORDER

__all__ = [
    "MAX_OBJECTS",
    "MIN_OBJECTS",
    "PRESETS",
    "plan_lt_shapes",
    "scene_rng",
    "target_train_image_counts",
]

MIN_OBJECTS = 2
MAX_OBJECTS = 6

PRESETS: Dict[str, Dict[str, int]] = {
    # ~1000 images of 128x128; a few seconds to generate on 2 cores.
    "default": {"num_train": 800, "num_val": 200, "image_size": 128},
    # For unit tests: well under a second.  Still 6 frequent / 12 common / 14 rare
    # categories (a frequent category needs > 100 train images, hence 200 of them).
    "tiny": {"num_train": 200, "num_val": 64, "image_size": 64},
    # The dense variant (``lt_shapes_dense``): 320 px images with 8-16 smaller objects (5%-25%
    # of the side) and fewer images, so more categories share an image; many more anchors per
    # positive than at 128 px, and a pyramid from 80x80 (P2) down to 5x5 (P6).
    "dense": {
        "num_train": 300,
        "num_val": 150,
        "image_size": 320,
        "min_objects": 8,
        "max_objects": 16,
        "min_rel_size": 0.05,
        "max_rel_size": 0.25,
    },
    # The large variant (``lt_shapes_large``): the default images, 25x as many. The rare
    # categories keep their 2-10 train images, so they are in 0.01-0.05% of the images, LVIS's
    # relative rarity (rare: at most 10 of its 100k images), which the default set (0.25-1.25%)
    # cannot have; the frequent ones grow with the set.
    "large": {"num_train": 20000, "num_val": 200, "image_size": 128},
}


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
    lo_r, hi_r = 2, LVIS_RARE_MAX_IMAGES
    per_rank = (
        _power_law(hi_f, lo_f, GROUP_SIZES["f"])
        + _power_law(hi_c, lo_c, GROUP_SIZES["c"])
        + _power_law(hi_r, lo_r, GROUP_SIZES["r"])
    )
    per_rank = [max(1, min(n, v)) for v in per_rank]
    by_name = {c["name"]: c["id"] for c in LT_SHAPES_CATEGORIES}
    return {by_name[name]: per_rank[r] for r, name in enumerate(RANK_ORDER)}


def scene_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *keys])))


SPLIT_KEY = {"train": 1, "val": 2}


def _assign_categories(
    num_images: int,
    targets: Dict[int, int],
    dup_weights: Dict[int, float],
    rng: np.random.Generator,
    split: str,
    min_objects: int = MIN_OBJECTS,
    max_objects: int = MAX_OBJECTS,
) -> List[List[int]]:
    """Give every image a list of category ids so that category c occurs in exactly
    ``targets[c]`` images (when possible); the rest of each image's slots are extra
    instances of categories already in that image.  Distinct categories come first."""
    cat_ids = sorted(targets)
    total = sum(targets.values())
    if max(targets.values()) > num_images:
        raise ValueError(
            f"{split}: a category needs {max(targets.values())} images but there are {num_images}"
        )
    slots = rng.integers(min_objects, max_objects + 1, size=num_images)
    if int(slots.sum()) < total:
        if total > num_images * max_objects:
            raise ValueError(
                f"{split}: {num_images} images x {max_objects} objects cannot hold the {total} "
                "(image, category) pairs the long-tail plan needs; use more images"
            )
        # Add slots to random images (that are not yet full) until the plan fits.
        while int(slots.sum()) < total:
            open_ = np.flatnonzero(slots < max_objects)
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
                key = remaining[avail] + u * 0.999 + empty * (max_objects + 1)
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
        raise ValueError(
            f"{split}: not enough free object slots for the long-tail plan; use more images"
        )
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


def plan_lt_shapes(
    seed: int = 0,
    num_train: int = 800,
    num_val: int = 200,
    min_objects: int = MIN_OBJECTS,
    max_objects: int = MAX_OBJECTS,
) -> Dict[str, object]:
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
    if sum(targets.values()) > num_train * max_objects:
        need = num_train
        while sum(target_train_image_counts(need).values()) > need * max_objects:
            need += 1
        raise ValueError(
            f"LT-Shapes needs at least {need} train images to realise its long-tailed plan "
            f"(6 frequent categories with > 100 images each, at most {max_objects} objects per "
            f"image); "
            f"got num_train={num_train}"
        )
    train = _assign_categories(
        num_train,
        targets,
        {c: float(t) for c, t in targets.items()},
        scene_rng(seed, SPLIT_KEY["train"], 0),
        "train",
        min_objects,
        max_objects,
    )
    # Validation: roughly class-balanced so that every category (rare ones included) has
    # enough instances to measure AP.  Each category gets the same number of images,
    # sized to fill ~80% of the expected object slots with distinct categories.
    min_val = -(-NUM_CLASSES // max_objects)
    if num_val < min_val:
        raise ValueError(
            f"LT-Shapes needs at least {min_val} val images to show every category; got "
            f"num_val={num_val}"
        )
    val_rng = scene_rng(seed, SPLIT_KEY["val"], 0)
    expected_slots = num_val * (min_objects + max_objects) / 2.0
    per_cat = int(max(1, min(num_val, math.floor(0.8 * expected_slots / NUM_CLASSES))))
    val_targets = {c["id"]: per_cat for c in LT_SHAPES_CATEGORIES}
    val = _assign_categories(
        num_val,
        val_targets,
        {c: 1.0 for c in val_targets},
        val_rng,
        "val",
        min_objects,
        max_objects,
    )

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
        "frequency": {c: frequency_group_of(n) for c, n in train_counts.items()},
    }
