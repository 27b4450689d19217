"""Turn command-line arguments into a checked, frozen config: the shared set-up of the launchers."""

import difflib
import logging
import os

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_libra_config
from ..data.dataset_check import DatasetError, check_training_data
from ..data.datasets.json_datasets import (
    attach_frequency_metadata,
    parse_dataset_spec,
    register_json_dataset,
)

__all__ = [
    "ConfigError",
    "DatasetError",
    "add_dataset_argument",
    "setup_cfg",
    "check_datasets",
    "merge_cfg_checked",
]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config names a key that does not exist or a value that cannot be used."""


def _all_keys(cfg: CfgNode, prefix=""):
    for k, v in cfg.items():
        full = prefix + k
        yield full
        if isinstance(v, CfgNode):
            yield from _all_keys(v, full + ".")


def _suggest(name, candidates):
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return " Did you mean: {}?".format(", ".join(close)) if close else ""


def merge_cfg_checked(cfg: CfgNode, config_file: str = None, opts=()):
    """``merge_from_file`` + ``merge_from_list`` whose errors name the bad key and the closest
    existing ones."""
    source = config_file or "command-line overrides"
    try:
        if config_file:
            if not os.path.isfile(config_file):
                raise ConfigError("config file not found: {}".format(config_file))
            cfg.merge_from_file(config_file)
        source = "command-line overrides"
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as e:
        # yacs: KeyError "Non-existent config key: X" (files), AssertionError "Non-existent key: X"
        # (overrides), AssertionError/ValueError for malformed override lists or values.
        msg = str(e.args[0]) if e.args else str(e)
        if "Non-existent" not in msg:
            raise ConfigError("invalid config in {}: {}".format(source, msg)) from None
        key = msg.split(":")[-1].strip()
        raise ConfigError(
            "unknown config key '{}' in {}.{}".format(key, source, _suggest(key, _all_keys(cfg)))
        ) from None
    return cfg


def check_datasets(names):
    """Fail before training when a dataset in ``names`` is unknown or its files are missing."""
    registered = DatasetCatalog.list()
    for name in names:
        if name not in registered:
            raise DatasetError(
                "dataset '{}' (in DATASETS.TRAIN/TEST) is not registered.{} Registered datasets "
                "include the Detectron2 builtins (coco_2017_*, lvis_v1_*, voc_*) and "
                "lt_shapes_train/"
                "lt_shapes_val.".format(name, _suggest(name, registered))
            )
        meta = MetadataCatalog.get(name)
        for field in ("json_file", "image_root", "dirname"):
            path = meta.get(field, None)
            if path and not os.path.exists(path):
                hint = (
                    "generate it with `make data` (or python datasets/prepare_lt_shapes.py)"
                    if name.startswith("lt_shapes")
                    else "see datasets/README.md for the expected layout under $DETECTRON2_DATASETS"
                )
                raise DatasetError(
                    "dataset '{}': {} not found: {}; {}".format(name, field, path, hint)
                )


def check_on_main_process(check):
    """Run ``check()`` (a pass over the training records) on the main process only; every process
    then raises the same :class:`DatasetError` if it failed, so no rank of a multi-machine run
    waits forever for a peer that stopped. Returns what ``check`` returned on the main process,
    None elsewhere."""
    result, failure = None, None
    if comm.is_main_process():
        try:
            result = check()
        except DatasetError as e:
            failure = e
    if comm.get_world_size() > 1:
        message = comm.all_gather(None if failure is None else str(failure))[0]
        if message is not None and failure is None:
            raise DatasetError(message)
    if failure is not None:
        raise failure
    return result


def use_cpu_without_cuda(cfg: CfgNode) -> None:
    """A ``cuda`` MODEL.DEVICE on a machine without CUDA becomes ``cpu``, with a warning."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE=%s but CUDA is not available: using cpu", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"


def add_dataset_argument(parser, help_text=None):
    """``--dataset NAME:JSON:IMAGE_ROOT`` (repeatable) on ``parser``: a COCO- or LVIS-format dataset
    registered under NAME (:func:`register_datasets`); the launchers and tools share it."""
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME:JSON:IMAGE_ROOT",
        help=help_text
        or "register a COCO- or LVIS-format dataset as NAME (repeatable); see "
        "libra_d2/data/datasets/json_datasets.py",
    )
    return parser


def argument_parser():
    """Detectron2's ``default_argument_parser`` with ``--dataset NAME:JSON:IMAGE_ROOT``
    (repeatable): a COCO- or LVIS-format dataset registered under NAME, for the config to name."""
    return add_dataset_argument(default_argument_parser())


def register_datasets(args):
    """Register the datasets of ``args.dataset`` (every process runs this: each needs the
    catalogs)."""
    for text in getattr(args, "dataset", None) or []:
        register_json_dataset(parse_dataset_spec(text))


def setup_cfg(args, *, do_default_setup=True):
    """Build the config from ``args`` (Detectron2's argument parser), check it and the training
    data (:func:`~libra_d2.data.dataset_check.check_training_data`), freeze it, and only then run
    Detectron2's ``default_setup`` (logging, output dir, seeding, saving the config)."""
    cfg = get_cfg()
    add_libra_config(cfg)
    merge_cfg_checked(cfg, args.config_file, args.opts)
    use_cpu_without_cuda(cfg)
    cfg.freeze()
    # Every check before default_setup: a run that cannot start writes nothing into OUTPUT_DIR
    # (default_setup saves config.yaml and opens log.txt there).
    register_datasets(args)
    check_datasets(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    groups = cfg.DATASETS.FREQUENCY_GROUPS
    attach_frequency_metadata(
        cfg.DATASETS.TRAIN,
        cfg.DATASETS.TEST,
        rare_max=groups.RARE_MAX_IMAGES,
        common_max=groups.COMMON_MAX_IMAGES,
    )
    summary = None
    if not getattr(args, "eval_only", False) and cfg.DATASETS.TRAIN:
        if cfg.MODEL.LOCE.FINETUNE:
            from .loce import check_finetune_weights  # (loce imports this module)

            check_finetune_weights(cfg)
        summary = check_on_main_process(lambda: check_training_data(cfg, list(cfg.DATASETS.TRAIN)))
    if do_default_setup:
        default_setup(cfg, args)
        # libra_d2's own loggers (hook progress such as LOCE's memory pre-fill) next to Detectron2's
        setup_logger(
            cfg.OUTPUT_DIR,
            distributed_rank=comm.get_rank(),
            name="libra_d2",
            abbrev_name="libra_d2",
        )
    if summary:
        logger.info("Training data checked:\n%s", summary)
    return cfg
