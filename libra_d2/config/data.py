"""libra_d2's data keys (``DATALOADER.BAD_BOXES``, ``DATASETS.FREQUENCY_GROUPS``)."""

from detectron2.config import CfgNode as CN

from ..data.frequency_groups import LVIS_COMMON_MAX_IMAGES, LVIS_RARE_MAX_IMAGES


def add_data_config(cfg):
    """Add libra_d2's ``DATALOADER`` keys to ``cfg`` in place. Safe to call twice."""
    _C = cfg
    if "BAD_BOXES" in _C.DATALOADER:  # already added: adding again would reset merged values
        return cfg
    # --- Training data (libra_d2/data/dataset_check.py, checked before training starts) ---
    # Boxes with zero or negative width / height and boxes reaching outside the image: "clip"
    # (clip to the image, drop those left empty: Detectron2's mapper, now reported), "drop" (drop
    # every such box), "error" (refuse to train).
    _C.DATALOADER.BAD_BOXES = "clip"
    # --- Frequency groups of datasets registered with --dataset (json_datasets.py) ---
    # A class is rare up to RARE_MAX_IMAGES training images, common up to COMMON_MAX_IMAGES,
    # frequent above (LVIS' thresholds by default).
    _C.DATASETS.FREQUENCY_GROUPS = CN()
    _C.DATASETS.FREQUENCY_GROUPS.RARE_MAX_IMAGES = LVIS_RARE_MAX_IMAGES
    _C.DATASETS.FREQUENCY_GROUPS.COMMON_MAX_IMAGES = LVIS_COMMON_MAX_IMAGES
    return cfg
