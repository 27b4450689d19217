"""LT-Shapes' drawing: a textured background, then the planned shapes (with jitter and an
occlusion limit), rendered with OpenCV."""

import math
from typing import List, Sequence

import numpy as np

from .lt_shapes_categories import LT_SHAPES_CATEGORIES, LT_SHAPES_SHAPES

__all__ = ["polygon_area", "render_image", "render_shape_crop"]

MIN_REL_SIZE = 0.10  # object size (extent before rotation) relative to the image side
MAX_REL_SIZE = 0.50
MAX_OCCLUDED_FRACTION = 0.70  # an object may lose at most 70% of its pixels to others


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
            [
                [-b, -a],
                [b, -a],
                [b, -b],
                [a, -b],
                [a, b],
                [b, b],
                [b, a],
                [-b, a],
                [-b, b],
                [-a, b],
                [-a, -b],
                [-b, -b],
            ]
        )
    raise ValueError(f"unknown shape {shape!r}")


_UNIT_POLYGONS = {s: _unit_polygon(s) for s in LT_SHAPES_SHAPES}
_SHIFT = 4  # cv2 fixed-point bits: polygons are rasterised with 1/16 pixel precision


def _to_cv_points(poly: np.ndarray) -> np.ndarray:
    # JSON polygons use the COCO convention (pixel (x, y) covers [x, x+1) x [y, y+1));
    # cv2 puts integer coordinates at pixel centres, hence the -0.5.
    return np.round((poly - 0.5) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _sample_polygon(
    shape: str, image_size: int, rng: np.random.Generator, max_rel: float, min_rel: float
) -> np.ndarray:
    s = float(image_size)
    lo, hi = min_rel * s, max(min_rel, max_rel) * s
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


def _paint(img: np.ndarray, poly: np.ndarray, rgb: np.ndarray, rng: np.random.Generator):
    """Draw one filled, anti-aliased polygon of colour ``rgb`` (with jitter) onto ``img``."""
    import cv2

    s = img.shape[0]
    color = rgb * rng.uniform(0.93, 1.07) + rng.uniform(-8.0, 8.0, size=3)
    color = np.clip(np.round(color), 0, 255)
    layer = np.zeros((s, s), dtype=np.uint8)
    cv2.fillPoly(layer, [_to_cv_points(poly)], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    alpha = (layer.astype(np.float64) / 255.0)[:, :, None]
    img = img * (1.0 - alpha) + color * alpha
    # A slightly darker 1-pixel rim centred on the polygon boundary keeps overlapping
    # objects of the same colour apart.
    rim = np.zeros((s, s), dtype=np.uint8)
    cv2.polylines(
        rim, [_to_cv_points(poly)], True, 255, thickness=1, lineType=cv2.LINE_AA, shift=_SHIFT
    )
    beta = (rim.astype(np.float64) / 255.0)[:, :, None] * 0.6
    return img * (1.0 - beta) + (color * 0.65) * beta


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel noise, uint8, RGB -> BGR."""
    img = img + rng.normal(0.0, 4.0, size=img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, ::-1])


def render_shape_crop(shape: str, rgb, size: int, rng: np.random.Generator) -> np.ndarray:
    """One shape of any colour on LT-Shapes' background, filling 25%-85% of a ``size`` x ``size``
    crop (BGR uint8): the images of the backbone pre-training task."""
    poly = _UNIT_POLYGONS[shape] * (size * rng.uniform(0.25, 0.85))
    poly = poly * np.array([rng.uniform(0.85, 1.15), 1.0])
    theta = rng.uniform(0.0, 2 * math.pi)
    c, si = math.cos(theta), math.sin(theta)
    poly = poly @ np.array([[c, si], [-si, c]])
    poly = poly * min(1.0, (size - 1) / (poly.max(axis=0) - poly.min(axis=0)).max())
    mn, mx = poly.min(axis=0), poly.max(axis=0)
    t = np.array([rng.uniform(-mn[0], size - mx[0]), rng.uniform(-mn[1], size - mx[1])])
    poly = np.clip(poly + t, 0.0, size)
    img = _paint(_background(size, rng), poly, np.asarray(rgb, dtype=np.float64), rng)
    return _finish(img, rng)


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def render_image(
    cat_ids: Sequence[int],
    image_size: int,
    rng: np.random.Generator,
    min_rel_size: float = MIN_REL_SIZE,
    max_rel_size: float = MAX_REL_SIZE,
):
    """Draw one image, objects sized ``min_rel_size``-``max_rel_size`` of its side. Returns (BGR
    uint8 image, objects in draw order, #dropped first instances)."""
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
            max_rel = max_rel_size - (max_rel_size - min_rel_size) * min(
                1.0, attempt / (0.75 * tries)
            )
            poly = _sample_polygon(shape, s, rng, max_rel, min_rel_size)
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
        img = _paint(img, o["poly"], rgb, rng)
    return _finish(img, rng), placed, dropped_first
