"""libra_d2's config keys, one ``add_*_config`` per method (as Detectron2's projects have), and
:func:`add_libra_config`, which adds them all. The comments next to each key are its reference."""

from .data import add_data_config
from .efl import add_efl_config
from .fcos import add_fcos_config
from .libra_rcnn import add_libra_rcnn_config
from .loce import add_loce_config
from .rga_prm import add_prm_config, add_rga_config

__all__ = [
    "add_libra_config",
    "add_libra_rcnn_config",
    "add_rga_config",
    "add_prm_config",
    "add_efl_config",
    "add_fcos_config",
    "add_loce_config",
    "add_data_config",
]


def add_libra_config(cfg):
    """Add every libra_d2 key to a Detectron2 config (in place); returns it. Safe to call twice."""
    for add in (
        add_libra_rcnn_config,
        add_rga_config,
        add_prm_config,
        add_efl_config,
        add_fcos_config,
        add_loce_config,
        add_data_config,
    ):
        add(cfg)
    return cfg
