#!/usr/bin/env python
"""Train or evaluate a model from a lazy (Python) config: LazyConfig + LazyCall + instantiate.

    python projects/lazy_train_net.py \\
        --config-file configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py
    python projects/lazy_train_net.py --config-file ... train.max_iter=100 train.output_dir=out
    python projects/lazy_train_net.py --config-file ... --eval-only \\
        train.init_checkpoint=out/model_final.pth
    python projects/lazy_train_net.py --config-file ... --num-gpus 2 --resume

The config provides ``model``, ``dataloader.train/test/evaluator``, ``optimizer``, ``lr_multiplier``
and ``train`` (see Detectron2's ``common/train.py``; ``train.clip_gradients`` takes the options of
``SOLVER.CLIP_GRADIENTS`` in lower case, ``train.hooks`` lists extra training hooks as LazyCalls
(e.g. RGA's ``[L(GradientAnnealing)(lambda0=7.0)]``, LOCE's ``L(LOCEFineTune)`` and
``L(FeatureMemoryHook)``), instantiated before anything is written and run after the LR scheduler
hook, and ``train.freeze`` names modules to freeze before the optimizer and DDP, as
``MODEL.LOCE.FREEZE`` does for YAML configs).
Same launcher, trainer loop, exact resume and CPU/GPU multi-process support as ``train_net.py``.
"""

import json
import logging
import os

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from libra_d2.checkpoint import SafeCheckpointer
from libra_d2.data.dataset_check import check_training_records, num_classes_of_lazy_model
from libra_d2.data.datasets.json_datasets import attach_frequency_metadata
from libra_d2.engine import (
    ExactResume,
    LibraTrainLoop,
    ProgressBar,
    argument_parser,
    check_datasets,
    launch_from_args,
    register_datasets,
)
from libra_d2.engine.rank_consistency import RankConsistencyCheck
from libra_d2.engine.setup import check_on_main_process
from libra_d2.engine.train_loop import capture_rng_state, restore_rng_state
from libra_d2.modeling.freeze import freeze_modules
from libra_d2.solver import add_gradient_clipping_from_train_cfg
from libra_d2.utils.compat import create_ddp_model

logger = logging.getLogger("libra_d2.lazy_train_net")


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    state = capture_rng_state()  # evaluation must not disturb the training RNG streams
    try:
        ret = inference_on_dataset(
            model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
        )
    finally:
        restore_rng_state(state)
    if comm.is_main_process():
        print_csv_format(ret)
        with open(os.path.join(cfg.train.output_dir, "eval_results.json"), "w") as f:
            json.dump(ret, f, indent=2)
    return ret


def do_train(args, cfg, extra_hooks=()):
    """``extra_hooks``: the instantiated ``train.hooks``."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)
    freeze = list(cfg.train.get("freeze", None) or [])  # e.g. LOCE stage 2's backbone and box FCs
    if freeze:  # before the optimizer and DDP see the parameters
        logger.info(
            "Frozen: %d parameters of %s", len(freeze_modules(model, freeze)), ", ".join(freeze)
        )

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    optim = add_gradient_clipping_from_train_cfg(
        optim, cfg.train
    )  # train.clip_gradients, if enabled
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = LibraTrainLoop(model, train_loader, optim, amp=cfg.train.amp.enabled)
    checkpointer = SafeCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.checkpointer = checkpointer  # divergence: tags the checkpoint --resume will use
    images_per_process = cfg.dataloader.train.total_batch_size // comm.get_world_size()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            *extra_hooks,  # train.hooks: e.g. RGA, LOCE's fine-tune and feature memory
            ExactResume(getattr(train_loader, "resumable_sampler", None), images_per_process),
            (
                RankConsistencyCheck(cfg.train.checkpointer.period)
                if comm.get_world_size() > 1
                else None
            ),
            (
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
                if comm.is_main_process()
                else None
            ),
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            ProgressBar(),
            (
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if comm.is_main_process()
                else None
            ),
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    if start_iter >= cfg.train.max_iter > 0:  # resumed a complete run: its final file must be sound
        checkpointer.ensure_final(start_iter - 1)
    trainer.train(start_iter, cfg.train.max_iter)


def _dataset_names(cfg, *splits):
    """Dataset names the lazy config's data loaders of ``splits`` (default: train and test) read."""
    names = []
    for split in splits or ("train", "test"):
        try:
            value = cfg.dataloader[split].dataset.names
        except (AttributeError, KeyError):
            continue
        names += [value] if isinstance(value, str) else list(value)
    return names


def main(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    # The checks first: a run that cannot start writes nothing into train.output_dir.
    register_datasets(args)
    check_datasets(_dataset_names(cfg))
    attach_frequency_metadata(_dataset_names(cfg, "train"), _dataset_names(cfg, "test"))
    summary, extra_hooks = None, []
    if not args.eval_only:
        key, num_classes = num_classes_of_lazy_model(cfg.model)
        summary = check_on_main_process(
            lambda: check_training_records(
                _dataset_names(cfg, "train"),
                key,
                num_classes,
                cfg.dataloader.train.get("bad_boxes", "clip"),
            )
        )
        # the hooks check their options when built (e.g. LOCE stage 2 without weights)
        extra_hooks = [instantiate(h) for h in cfg.train.get("hooks", None) or []]
    default_setup(cfg, args)
    # libra_d2's own loggers (hook progress such as LOCE's memory pre-fill) next to Detectron2's
    setup_logger(
        cfg.train.output_dir,
        distributed_rank=comm.get_rank(),
        name="libra_d2",
        abbrev_name="libra_d2",
    )
    if summary:
        logger.info("Training data checked:\n%s", summary)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model)
        SafeCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg, extra_hooks)  # its EvalHook evaluates at the end of training


def cli(argv=None):
    args = argument_parser().parse_args(argv)
    launch_from_args(main, args)


if __name__ == "__main__":
    cli()
