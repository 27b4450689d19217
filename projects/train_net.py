#!/usr/bin/env python
"""Train or evaluate a libra_d2 / Detectron2 model from a YAML config.

    python projects/train_net.py --config-file configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml
    python projects/train_net.py --config-file ... --num-gpus 8                # one machine
    python projects/train_net.py --config-file ... --num-gpus 8 --num-machines 2 \
        --machine-rank 0 --dist-url tcp://<host0>:<port>                       # several machines
    python projects/train_net.py --config-file ... --resume                    # continue exactly
    python projects/train_net.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
    python projects/train_net.py --config-file ... \
        --dataset my_train:data/train.json:data/images --dataset my_val:data/val.json:data/images \
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_val",)' MODEL.ROI_HEADS.NUM_CLASSES 5

Without CUDA, ``--num-gpus N`` starts N CPU processes that communicate over gloo.
"""

import json
import logging
import os

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)
from detectron2.evaluation import print_csv_format, verify_results
from detectron2.utils import comm

from libra_d2.checkpoint import SafeCheckpointer
from libra_d2.engine import LibraTrainer, argument_parser, launch_from_args, setup_cfg

logger = logging.getLogger("libra_d2.train_net")


def save_results(cfg, results):
    """Write the final evaluation results next to the checkpoints (main process)."""
    if not comm.is_main_process() or not results:
        return
    path = os.path.join(cfg.OUTPUT_DIR, "eval_results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    logger.info("Evaluation results written to %s", path)


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = LibraTrainer.build_model(cfg)
        SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = LibraTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
            print_csv_format(results)
        save_results(cfg, results)
        return results

    trainer = LibraTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    save_results(cfg, results or getattr(trainer, "_last_eval_results", None))
    return results


def cli(argv=None):
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    launch_from_args(main, args)


if __name__ == "__main__":
    cli()
