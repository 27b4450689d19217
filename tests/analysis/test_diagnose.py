"""``libra_d2.analysis.diagnose`` on LT-Shapes (tiny preset) for the model kinds: a Libra Faster
R-CNN (IoU-balanced sampler, sigmoid BCR head) and a dense EFL RetinaNet, and the report it writes.
The end-to-end command on a user's dataset is in ``tests/data/test_json_datasets.py``."""

import json

import pytest
import torch
from conftest import REPO_ROOT, TINY_INPUT
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from libra_d2.analysis import diagnose
from libra_d2.analysis.report import format_refine_change, load_weights
from libra_d2.config import add_libra_config


def _cfg(name, *opts):
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.merge_from_file("{}/configs/LT-Shapes/{}.yaml".format(REPO_ROOT, name))
    cfg.merge_from_list([*TINY_INPUT, *opts])
    return cfg


def test_two_stage_report(lt_shapes_tiny, tmp_path):
    cfg = _cfg("libra_faster_rcnn_R_18_FPN_tiny")
    result = diagnose(cfg, str(tmp_path), num_images=8, batch_size=4)
    assert result["images"] == 8 and result["kind"] == "two-stage"
    sample = result["sample"]
    assert sample["negative_sampler"] == "iou_balanced"
    # every negative is below the foreground IoU (0.5), so inside the histogram's bins
    assert sum(sample["sampled_histogram"]) == sample["sampled_count"] > 0
    assert sum(sample["random_histogram"]) == sample["random_count"]
    # the pool holds every negative, so the sample cannot be larger
    assert sample["sampled_count"] <= sample["random_count"]
    assert "sigmoid" in result["objective"]["loss"]  # BCR's classifier
    assert len(result["objective"]["ratio"]) == 32
    # the config's weights are a pre-trained ResNet (the tests' stand-in): an initialisation, so
    # no feature section
    assert result["weights"] == cfg.MODEL.WEIGHTS and result["trained"] is False
    assert "feature" not in result
    page = (tmp_path / "report.md").read_text()
    assert "Measured with a trained detector's checkpoint only" in page
    assert "describe the initial model" in page and "(an initialisation)" in page
    with open(tmp_path / "report.json") as f:
        assert json.load(f)["class"]["groups"]["r"]["classes"] == 14


def test_a_detectors_checkpoint_counts_as_trained_a_backbones_does_not(tmp_path):
    cfg = _cfg("libra_faster_rcnn_R_18_FPN_tiny")
    model = build_model(cfg)
    assert not load_weights(model, cfg.MODEL.WEIGHTS)  # the pre-trained ResNet: backbone only
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.add_(1.0)  # as if trained
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("detector")
    assert load_weights(build_model(cfg), str(tmp_path / "detector.pth"))


def test_dense_report_and_determinism(lt_shapes_tiny, tmp_path):
    cfg = _cfg("efl_retinanet_R_18_FPN_tiny")
    first = diagnose(cfg, str(tmp_path / "a"), num_images=4, batch_size=2)
    assert first["kind"] == "dense"
    assert first["sample"]["negatives_per_positive"] > 1
    assert "focal" in first["objective"]["loss"]
    again = diagnose(cfg, str(tmp_path / "b"), num_images=4, batch_size=2)
    # seeded flips: the same numbers (nan where no positive, nan != nan)
    assert json.dumps(again["objective"]["ratio"]) == json.dumps(first["objective"]["ratio"])


def test_no_training_data_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="DATASETS.TRAIN"):
        diagnose(_cfg("faster_rcnn_R_18_FPN_tiny", "DATASETS.TRAIN", "()"), str(tmp_path))


def test_refine_change_is_readable_near_zero_and_near_one():
    assert format_refine_change(0.0034) == "0.0034"  # an identity-like refine is not "0.00"
    assert format_refine_change(1.0326) == "1.03"  # a refine that replaces the feature is not "1"
