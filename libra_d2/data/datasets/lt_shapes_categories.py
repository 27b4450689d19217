"""LT-Shapes' 32 categories: 8 shape families x 4 colours, with their planned frequency groups.

Inside every shape family a head colour and a look-alike tail colour sit side by side
(``circle_red`` is frequent, ``circle_orange`` is rare), so a detector trained on LT-Shapes is
biased toward the head classes the way it is on LVIS. The category data, in the manner of
Detectron2's ``lvis_v1_categories.py``; the groups a generated dataset really has are recomputed
from its train split (``libra_d2.data.frequency_groups.frequency_group_of``).
"""

from typing import Dict, List

__all__ = [
    "LT_SHAPES_CATEGORIES",
    "LT_SHAPES_COLORS",
    "LT_SHAPES_SHAPES",
    "NUM_CLASSES",
    "lt_shapes_category_names",
]

LT_SHAPES_SHAPES = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "pentagon",
    "hexagon",
    "star",
    "cross",
)

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
RANK_ORDER = (
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
GROUP_SIZES = {"f": 6, "c": 12, "r": 14}


def _build_categories() -> tuple:
    rank_of = {name: r for r, name in enumerate(RANK_ORDER)}
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
    assert len(set(names)) == len(names) == len(RANK_ORDER) == NUM_CLASSES
    assert sorted(names) == sorted(RANK_ORDER)
    start = 0
    for group in ("f", "c", "r"):
        n = GROUP_SIZES[group]
        for name in RANK_ORDER[start : start + n]:
            assert LT_SHAPES_CATEGORIES[names.index(name)]["planned_frequency"] == group, name
        start += n


_check_category_table()


def lt_shapes_category_names() -> List[str]:
    """Class names in contiguous (Detectron2) order."""
    return [c["name"] for c in LT_SHAPES_CATEGORIES]
