"""The locally pre-trained tiny backbone: the ``libra_d2://pretrained/`` weights paths, and a short
pre-training whose checkpoint loads, key for key, into the tiny detectors' ResNet with BatchNorm
or FrozenBN."""

import os

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.file_io import PathManager

from libra_d2.checkpoint import TINY_BACKBONE_WEIGHTS, resolve_weights
from libra_d2.config import add_libra_config
from libra_d2.engine.backbone_pretraining import (
    HUE_BINS,
    ShapeHueClassifier,
    main,
    make_crops,
    pretrain_backbone,
)


def _cfg(name="faster_rcnn_R_18_FPN_tiny", *opts):
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/LT-Shapes", name + ".yaml"))
    cfg.merge_from_list(list(opts))
    return cfg


def test_weights_path_resolves_and_missing_file_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBRA_D2_PRETRAINED", str(tmp_path))
    local = resolve_weights(TINY_BACKBONE_WEIGHTS)
    assert local == str(tmp_path / "R-18-LTShapes-crops.pth")
    assert not PathManager.isfile(TINY_BACKBONE_WEIGHTS)
    with pytest.raises(FileNotFoundError, match="make pretrained"):
        PathManager.get_local_path(TINY_BACKBONE_WEIGHTS)
    with pytest.raises(ValueError, match="not a libra_d2 weights path"):
        resolve_weights("detectron2://x.pkl")
    monkeypatch.delenv("LIBRA_D2_PRETRAINED")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d"))
    assert resolve_weights(TINY_BACKBONE_WEIGHTS) == str(
        tmp_path / "d/pretrained/R-18-LTShapes-crops.pth"
    )


def test_crops_are_deterministic_and_labelled():
    images, shapes, hues = make_crops(6, 32, seed=3)
    again = make_crops(6, 32, seed=3)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again[0]) and np.array_equal(hues, again[2])
    assert not np.array_equal(images, make_crops(6, 32, seed=4)[0])
    assert shapes.min() >= 0 and shapes.max() < 8 and hues.min() >= 0 and hues.max() < HUE_BINS


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 4-iteration pre-training on 64 crops: its checkpoint and the info it returned."""
    path = str(tmp_path_factory.mktemp("pretrained") / "r18.pth")
    info = pretrain_backbone(
        _cfg(), path, num_train=64, num_val=16, crop_size=32, iters=4, batch_size=8, log_period=2
    )
    return path, info


def test_pretraining_saves_the_backbone_of_the_detector(pretrained):
    path, info = pretrained
    assert 0.0 <= info["held_out_shape_accuracy"] <= 1.0 and info["iters"] == 4
    assert os.path.isfile(os.path.splitext(path)[0] + ".json")
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    assert all(k.startswith("backbone.bottom_up.") for k in state)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    assert not any("head" in k for k in state)  # the classifier heads are dropped
    # exactly the ResNet of the detector: no key missing, none left over
    for name, norm in (
        ("faster_rcnn_R_18_FPN_tiny", "FrozenBN"),
        ("retinanet_R_18_FPN_tiny", "BN"),
    ):
        model = build_model(_cfg(name, "MODEL.RESNETS.NORM", norm))
        bottom_up = {
            k: v for k, v in model.state_dict().items() if k.startswith("backbone.bottom_up.")
        }
        assert set(bottom_up) - {k for k in bottom_up if k.endswith("num_batches_tracked")} == set(
            state
        )
        DetectionCheckpointer(model).load(path)
        loaded = model.state_dict()
        for k, v in state.items():
            assert torch.equal(loaded[k], v), k


def test_the_pretrained_weights_differ_from_the_initial_ones(pretrained):
    path, _ = pretrained
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    torch.manual_seed(0)
    fresh = ShapeHueClassifier(_cfg()).bottom_up.state_dict()
    key = "backbone.bottom_up.res5.1.conv2.weight"
    assert not torch.equal(state[key], fresh[key[len("backbone.bottom_up.") :]])


def test_command_keeps_an_existing_checkpoint(pretrained, tmp_path):
    path, _ = pretrained
    before = os.path.getmtime(path)
    assert main(["--output", path]) == path  # exists: not rebuilt
    assert os.path.getmtime(path) == before
    with pytest.raises(SystemExit, match="config file not found"):
        main(["--output", str(tmp_path / "new.pth"), "--config-file", "nope.yaml"])
