"""Every YAML config in configs/ merges into a libra_d2 config (no unknown keys) and builds its
model; every lazy config loads and instantiates its model."""

import glob
import os

import pytest
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

import libra_d2
from libra_d2.engine.gradient_annealing import GradientAnnealing

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAMLS = sorted(
    os.path.relpath(p, REPO_ROOT)
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)
LAZY = sorted(
    os.path.relpath(p, REPO_ROOT)
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "lazy", "*.py"), recursive=True)
)


def test_configs_found():
    assert len(YAMLS) >= 10 and LAZY


def _yaml_cfg_and_model(path):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, path))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg, build_model(cfg)


@pytest.mark.parametrize("path", YAMLS)
def test_yaml_config_builds(path):
    cfg, model = _yaml_cfg_and_model(path)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.OUTPUT_DIR.startswith("output/"), "model-zoo style output dir"


@pytest.mark.parametrize("path", LAZY)
def test_lazy_config_builds(path):
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, path))
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize(
    "lazy,yaml",
    [
        (
            "configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny_rga_prm.py",
            "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml",
        ),
        (
            "configs/COCO-Detection/lazy/faster_rcnn_R_50_FPN_1x_rga_prm.py",
            "configs/COCO-Detection/faster_rcnn_R_50_FPN_1x_rga_prm.yaml",
        ),
    ],
)
def test_lazy_prm_twins_match_their_yaml(lazy, yaml):
    """libra_d2.lazy.parallel_roi_heads gives the YAML's PRM model: same parameters and buffers
    (names and shapes), same positive fractions, and RGA in ``train.hooks``."""
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, lazy))
    ours, ref = instantiate(cfg.model), _yaml_cfg_and_model(yaml)[1]
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(ref)
    assert ours.roi_heads.positive_fractions == ref.roi_heads.positive_fractions == (0.5, 0.1)
    rga = instantiate(cfg.train.hooks[0])
    assert isinstance(rga, GradientAnnealing) and rga.lambda0 == 7.0 and not rga.constant


@pytest.mark.parametrize(
    "lazy,yaml",
    [
        (
            "configs/LT-Shapes/lazy/cascade_rcnn_R_18_FPN_tiny_rga.py",
            "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga.yaml",
        ),
        (
            "configs/COCO-Detection/lazy/cascade_rcnn_R_50_FPN_1x_rga.py",
            "configs/COCO-Detection/cascade_rcnn_R_50_FPN_1x_rga.yaml",
        ),
    ],
)
def test_lazy_cascade_twins_match_their_yaml(lazy, yaml):
    """libra_d2.lazy.cascade_roi_heads gives the YAML's Cascade R-CNN: same parameters and buffers
    (names and shapes), the same per-stage IoUs, box-regression weights and class-agnostic
    regression, the same training proposals, and RGA in ``train.hooks``."""
    from detectron2.modeling.roi_heads import CascadeROIHeads

    cfg = LazyConfig.load(os.path.join(REPO_ROOT, lazy))
    ours, ref = instantiate(cfg.model), _yaml_cfg_and_model(yaml)[1]
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(ref)
    assert isinstance(ours.roi_heads, CascadeROIHeads) and ours.roi_heads.num_cascade_stages == 3
    for a, b in zip(ours.roi_heads.proposal_matchers, ref.roi_heads.proposal_matchers):
        assert a.thresholds == b.thresholds
    for a, b in zip(ours.roi_heads.box_predictor, ref.roi_heads.box_predictor):
        assert a.box2box_transform.weights == b.box2box_transform.weights
        assert a.bbox_pred.out_features == b.bbox_pred.out_features == 4  # class-agnostic
    assert ours.proposal_generator.post_nms_topk == ref.proposal_generator.post_nms_topk
    rga = instantiate(cfg.train.hooks[0])
    assert isinstance(rga, GradientAnnealing) and rga.lambda0 == 7.0 and not rga.constant
