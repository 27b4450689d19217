"""libra_d2's data keys (``DATALOADER.BAD_BOXES``)."""


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
    return cfg
