"""put_scalar_deferred: statistics logged without reading tensors back to the host, written by the
train loop with the same names, values and iterations as EventStorage.put_scalar."""

import os
import sys

import pytest
import torch
from detectron2.utils.events import EventStorage

from libra_d2.utils.events import flush_deferred_scalars, put_scalar_deferred


@pytest.fixture
def no_read_back(monkeypatch):
    """Make every tensor -> Python read-back from libra_d2's code raise."""
    for name in _ORIGINALS:
        monkeypatch.setattr(torch.Tensor, name, _refusing(name))
    return monkeypatch


def test_deferred_values_written_at_flush(no_read_back):
    with EventStorage(start_iter=7) as storage:
        put_scalar_deferred("a", torch.tensor(2.5))
        put_scalar_deferred("b", torch.tensor([3]).sum() / 2)
        put_scalar_deferred("c", 4)
        assert "a" not in storage.histories()  # nothing read yet
        no_read_back.undo()
        flush_deferred_scalars(storage)
        assert storage.history("a").values() == [(2.5, 7)]
        assert storage.history("b").values() == [(1.5, 7)]
        assert storage.history("c").values() == [(4.0, 7)]
        flush_deferred_scalars(storage)  # nothing pending: no-op
        assert len(storage.history("a").values()) == 1


def test_pending_values_of_an_earlier_iteration_are_not_lost():
    """With a trainer that never flushes (Detectron2's SimpleTrainer), the next iteration's first
    deferred value writes the previous iteration's."""
    with EventStorage(start_iter=0) as storage:
        put_scalar_deferred("x", torch.tensor(1.0))
        storage.step()
        put_scalar_deferred("x", torch.tensor(2.0))
        ((value, it),) = storage.history("x").values()
        assert value == 1.0 and it in (0, 1)  # 0 where put_scalar takes cur_iter (main)
        flush_deferred_scalars(storage)
        assert storage.history("x").values()[-1] == (2.0, 1)


@pytest.mark.parametrize(
    "config", ["libra_retinanet_R_18_FPN_tiny.yaml", "efl_retinanet_R_18_FPN_tiny.yaml"]
)
def test_dense_detector_losses_read_nothing_back(no_read_back, config):
    """LibraRetinaNet's and EFLRetinaNet's losses (positive-anchor count, loss normaliser) stay on
    the device; their statistics reach the storage at the flush."""
    from conftest import REPO_ROOT
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from tiny_models import dense_case

    import libra_d2

    no_read_back.undo()
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "LT-Shapes", config))
    cfg.MODEL.EFL.LOG_PERIOD = 0  # (the periodic per-group log reads back, by design)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    anchors, logits, gt_labels, deltas, gt_boxes = dense_case(cfg.MODEL.RETINANET.NUM_CLASSES)
    with EventStorage() as storage:
        for name in _ORIGINALS:
            no_read_back.setattr(torch.Tensor, name, _refusing(name))
        losses = model.losses(anchors, logits, gt_labels, deltas, gt_boxes)
        no_read_back.undo()
        flush_deferred_scalars(storage)
        expected = (
            sum(
                int((g >= 0).sum() - (g == cfg.MODEL.RETINANET.NUM_CLASSES).sum())
                for g in gt_labels
            )
            / 2
        )
        assert storage.history("num_pos_anchors").latest() == expected
    assert torch.isfinite(sum(losses.values()))


_ORIGINALS = {
    name: getattr(torch.Tensor, name)
    for name in ("item", "tolist", "__float__", "__int__", "__bool__")
}


def _refusing(name):
    """``torch.Tensor.<name>`` that raises when called from libra_d2's own code (Detectron2's own
    read-backs, e.g. Box2BoxTransform's input check, are Detectron2's and allowed)."""
    original = _ORIGINALS[name]

    def method(self, *args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if os.sep + "libra_d2" + os.sep in caller:
            raise AssertionError(
                "libra_d2 read a tensor back to the host ({} in {}:{})".format(
                    name, caller, sys._getframe(1).f_lineno
                )
            )
        return original(self, *args, **kwargs)

    return method
