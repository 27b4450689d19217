#!/usr/bin/env python
"""Diagnose the imbalances of a config on its training data: class, sample, objective and (with a
checkpoint) feature. Writes ``report.md`` with PNG figures and ``report.json`` into ``--output``.

    python projects/diagnose.py --config-file configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml \
        --output output/diagnosis [--num-images 64] [MODEL.WEIGHTS output/run/model_final.pth]
    python projects/diagnose.py --dataset mine:ann/train.json:images/ \
        --config-file ... --output ... DATASETS.TRAIN "('mine',)"

``--dataset NAME:JSON:IMAGE_ROOT`` registers a COCO- or LVIS-format dataset, as in
``train_net.py``. The config and its datasets are checked as for training before anything is
written. See ``libra_d2/analysis`` for what each section measures.
"""

import argparse
import logging
import os

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)
from detectron2.utils.logger import setup_logger

from libra_d2.analysis import diagnose
from libra_d2.engine.setup import add_dataset_argument, setup_cfg

logger = logging.getLogger("libra_d2.diagnose")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--output", required=True, help="folder for report.md and its figures")
    parser.add_argument("--num-images", type=int, default=64, help="training images measured")
    parser.add_argument("--batch-size", type=int, default=4)
    add_dataset_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (KEY VALUE ...)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.num_images < 1 or args.batch_size < 1:
        raise SystemExit("--num-images and --batch-size must be at least 1")
    setup_logger(name="libra_d2")
    # Only the training data is read: the test sets need not be registered.
    args.opts = list(args.opts) + ["DATASETS.TEST", "()"]
    # The training checks (config keys, datasets and their records), without training's setup.
    cfg = setup_cfg(args, do_default_setup=False)
    result = diagnose(
        cfg,
        args.output,
        num_images=args.num_images,
        batch_size=args.batch_size,
        config_file=args.config_file,
    )
    logger.info("Wrote %s", os.path.join(args.output, "report.md"))
    return result


if __name__ == "__main__":
    main()
