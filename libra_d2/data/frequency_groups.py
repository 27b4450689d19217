"""The frequency groups of classes: LVIS's rule, the one rule of the package (LT-Shapes' planner and
files, the datasets' metadata, the methods' per-group logs and the evaluation's APr/APc/APf).

A class is rare, common or frequent by the number of training images that contain it: rare up to
10 images, common up to 100, frequent above (LVIS). Dependency-free, so that the dataset modules
can use it.
"""

__all__ = ["LVIS_COMMON_MAX_IMAGES", "LVIS_RARE_MAX_IMAGES", "frequency_group_of"]

LVIS_RARE_MAX_IMAGES = 10
LVIS_COMMON_MAX_IMAGES = 100


def frequency_group_of(
    image_count: float,
    rare_max: int = LVIS_RARE_MAX_IMAGES,
    common_max: int = LVIS_COMMON_MAX_IMAGES,
) -> str:
    """The frequency group of a class seen in ``image_count`` training images: 'r' (at most
    ``rare_max``, including 0), 'c' (at most ``common_max``) or 'f'; LVIS's by default."""
    if image_count <= rare_max:
        return "r"
    if image_count <= common_max:
        return "c"
    return "f"
