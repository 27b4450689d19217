"""LibraTrainer: method hooks from TRAINER_HOOK_REGISTRY are installed and get after_backward
between backward and the optimizer step (on Detectron2 0.6, which has no such hook point, too)."""

import argparse
import os

import torch
from conftest import TINY_INPUT, short_training
from detectron2.engine import HookBase

from libra_d2.engine import TRAINER_HOOK_REGISTRY, LibraTrainer, setup_cfg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class RecordGradients(HookBase):
    def __init__(self):
        self.events = []

    def after_backward(self):
        model = self.trainer.model
        p = next(q for q in model.parameters() if q.grad is not None)
        self.events.append(("after_backward", self.trainer.iter, p.grad.abs().sum().item() > 0))
        self._snapshot = p.detach().clone()
        self._param = p

    def after_step(self):
        changed = not torch.equal(self._snapshot, self._param.detach())
        self.events.append(("after_step", self.trainer.iter, changed))


def test_registered_hook_runs_between_backward_and_step(lt_shapes_tiny, tmp_path):
    recorder = RecordGradients()
    name = "_test_record_gradients"
    TRAINER_HOOK_REGISTRY._obj_map[name] = lambda trainer: recorder
    try:
        args = argparse.Namespace(
            config_file=os.path.join(REPO_ROOT, "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"),
            opts=[
                "SOLVER.MAX_ITER",
                "2",
                "DATASETS.TEST",
                "()",
                "OUTPUT_DIR",
                str(tmp_path),
                *TINY_INPUT,
            ],
        )
        cfg = setup_cfg(args, do_default_setup=False)
        trainer = LibraTrainer(cfg)
        assert recorder in trainer._hooks
        trainer.train()
    finally:
        del TRAINER_HOOK_REGISTRY._obj_map[name]
    # gradients exist at after_backward, and the optimizer step happens after it
    assert recorder.events == [
        ("after_backward", 0, True),
        ("after_step", 0, True),
        ("after_backward", 1, True),
        ("after_step", 1, True),
    ]


def test_subclass_train_loader_is_used(lt_shapes_tiny, tmp_path):
    """A subclass's ``build_train_loader`` (as PointRend's trainer overrides it) feeds the run."""
    from libra_d2.data.build import build_resumable_train_loader

    served = []

    class CountingTrainer(LibraTrainer):
        @classmethod
        def build_train_loader(cls, cfg):
            for batch in build_resumable_train_loader(cfg):
                served.append(len(batch))
                yield batch

    args = argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"),
        opts=short_training(tmp_path),
    )
    trainer = CountingTrainer(setup_cfg(args, do_default_setup=False))
    trainer.train()
    assert served == [2, 2]
