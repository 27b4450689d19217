"""Every YAML config in configs/ merges into a libra_d2 config (no unknown keys) and builds its
model; every lazy config loads and instantiates its model."""

import glob
import os

import pytest
import torch
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


def _state_shapes(model):
    """The names and shapes of a model's parameters and buffers (what a checkpoint must match)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


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
    assert _state_shapes(ours) == _state_shapes(ref)
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
    assert _state_shapes(ours) == _state_shapes(ref)
    assert isinstance(ours.roi_heads, CascadeROIHeads) and ours.roi_heads.num_cascade_stages == 3
    for a, b in zip(ours.roi_heads.proposal_matchers, ref.roi_heads.proposal_matchers):
        assert a.thresholds == b.thresholds
    for a, b in zip(ours.roi_heads.box_predictor, ref.roi_heads.box_predictor):
        assert a.box2box_transform.weights == b.box2box_transform.weights
        assert a.bbox_pred.out_features == b.bbox_pred.out_features == 4  # class-agnostic
    assert ours.proposal_generator.post_nms_topk == ref.proposal_generator.post_nms_topk
    rga = instantiate(cfg.train.hooks[0])
    assert isinstance(rga, GradientAnnealing) and rga.lambda0 == 7.0 and not rga.constant


@pytest.mark.parametrize(
    "lazy,yaml",
    [
        (
            "configs/LT-Shapes/lazy/cascade_rcnn_R_18_FPN_tiny_rga_prm.py",
            "configs/LT-Shapes/cascade_rcnn_R_18_FPN_tiny_rga_prm.yaml",
        ),
        (
            "configs/COCO-Detection/lazy/cascade_rcnn_R_50_FPN_1x_rga_prm.py",
            "configs/COCO-Detection/cascade_rcnn_R_50_FPN_1x_rga_prm.yaml",
        ),
    ],
)
def test_lazy_prm_cascade_twins_match_their_yaml(lazy, yaml):
    """libra_d2.lazy.parallel_cascade_roi_heads gives the YAML's PRM Cascade R-CNN: same
    parameters and buffers (names and shapes), positive fractions, per-stage IoUs and
    box-regression weights, training proposals, and RGA in ``train.hooks``."""
    from libra_d2.modeling.roi_heads import ParallelCascadeROIHeads

    cfg = LazyConfig.load(os.path.join(REPO_ROOT, lazy))
    ours, ref = instantiate(cfg.model), _yaml_cfg_and_model(yaml)[1]
    assert _state_shapes(ours) == _state_shapes(ref)
    assert isinstance(ours.roi_heads, ParallelCascadeROIHeads)
    assert ours.roi_heads.positive_fractions == ref.roi_heads.positive_fractions == (0.5, 0.1)
    assert ours.roi_heads.num_cascade_stages == ref.roi_heads.num_cascade_stages == 3
    assert ours.roi_heads.proposal_matcher.thresholds == ref.roi_heads.proposal_matcher.thresholds
    for a, b in zip(ours.roi_heads.stage_matchers, ref.roi_heads.stage_matchers):
        assert a.thresholds == b.thresholds
    for k in range(2):
        for a, b in zip(ours.roi_heads.box_predictors[k], ref.roi_heads.box_predictors[k]):
            assert type(a) is type(b)
            assert a.box2box_transform.weights == b.box2box_transform.weights
    assert ours.proposal_generator.post_nms_topk == ref.proposal_generator.post_nms_topk
    rga = instantiate(cfg.train.hooks[0])
    assert isinstance(rga, GradientAnnealing) and rga.lambda0 == 7.0 and not rga.constant


@pytest.mark.parametrize(
    "lazy,yaml",
    [
        (
            "configs/LT-Shapes/lazy/efl_fcos_R_18_FPN_tiny.py",
            "configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml",
        ),
        (
            "configs/LVISv1-Detection/lazy/efl_fcos_R_50_FPN_2x.py",
            "configs/LVISv1-Detection/efl_fcos_R_50_FPN_2x.yaml",
        ),
    ],
)
def test_lazy_efl_fcos_twins_match_their_yaml(lazy, yaml):
    """The lazy EFL FCOS* builds the YAML's model: same parameters and buffers (names and shapes),
    the same classifier prior, EFL loss, normaliser, center sampling and test settings; the same
    RFS, learning rate and gradient clipping."""
    from libra_d2.modeling.meta_arch import EFLFCOS

    cfg = LazyConfig.load(os.path.join(REPO_ROOT, lazy))
    yaml_cfg, ref = _yaml_cfg_and_model(yaml)
    ours = instantiate(cfg.model)
    assert isinstance(ours, EFLFCOS) and isinstance(ref, EFLFCOS)
    assert _state_shapes(ours) == _state_shapes(ref)
    # the classifier prior
    assert float(ours.head.cls_score.bias[0].detach()) == float(ref.head.cls_score.bias[0].detach())
    settings = (
        "center_sampling_radius",
        "test_score_thresh",
        "test_topk_candidates",
        "test_nms_thresh",
        "max_detections_per_image",
        "loss_normalizer_type",
        "frequency_groups",
        "log_period",
    )
    for attr in settings:
        assert getattr(ours, attr) == getattr(ref, attr), attr
    for attr in ("gamma_b", "scale", "alpha", "use_focusing", "use_weighting"):
        assert getattr(ours.efl, attr) == getattr(ref.efl, attr), attr
    assert cfg.dataloader.train.repeat_threshold == yaml_cfg.DATALOADER.REPEAT_THRESHOLD
    assert cfg.optimizer.lr == yaml_cfg.SOLVER.BASE_LR
    clip = yaml_cfg.SOLVER.CLIP_GRADIENTS
    assert dict(cfg.train.clip_gradients) == {
        "enabled": clip.ENABLED,
        "clip_type": clip.CLIP_TYPE,
        "clip_value": clip.CLIP_VALUE,
        "norm_type": clip.NORM_TYPE,
    }


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_lazy_loce_twins_match_their_yaml(stage):
    """The lazy LOCE stages build their YAML's model: same parameters and buffers (names and
    shapes, so a stage 1 of either kind feeds a stage 2 of either kind), the same ROI heads and box
    predictor settings (the Equilibrium Loss in stage 2 only)."""
    from libra_d2.modeling.roi_heads.loce_roi_heads import LOCEROIHeads

    name = "loce_faster_rcnn_R_18_FPN_tiny_" + stage
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/LT-Shapes/lazy", name + ".py"))
    ours, ref = (
        instantiate(cfg.model),
        _yaml_cfg_and_model("configs/LT-Shapes/" + name + ".yaml")[1],
    )
    assert _state_shapes(ours) == _state_shapes(ref)
    assert isinstance(ours.roi_heads, LOCEROIHeads) and isinstance(ref.roi_heads, LOCEROIHeads)
    assert ours.roi_heads.memory_feature_shape == ref.roi_heads.memory_feature_shape
    assert ours.roi_heads.num_jitter == ref.roi_heads.num_jitter
    a, b = ours.roi_heads.box_predictor, ref.roi_heads.box_predictor
    assert a.use_equilibrium_loss == b.use_equilibrium_loss == (stage == "stage2")
    assert a.frequency_groups == b.frequency_groups and a.log_period == b.log_period
    assert torch.equal(a.mean_score.score, b.mean_score.score)


def test_lazy_efl_improved_baseline_twin_matches_its_yaml():
    """The lazy improved baseline builds the YAML's model (parameters, ATSS, the IoU branch, the
    anchors, GIoU) with the YAML's warm-up, clip and learning rate."""
    cfg = LazyConfig.load(
        os.path.join(REPO_ROOT, "configs/LT-Shapes/lazy/efl_improved_baseline_R_18_FPN_tiny.py")
    )
    yaml_cfg, ref = _yaml_cfg_and_model(
        "configs/LT-Shapes/efl_improved_baseline_R_18_FPN_tiny.yaml"
    )
    ours = instantiate(cfg.model)
    assert _state_shapes(ours) == _state_shapes(ref)
    for a, b in zip(ours.anchor_generator.cell_anchors, ref.anchor_generator.cell_anchors):
        assert torch.equal(a, b)
    assert ours.box_reg_loss_type == ref.box_reg_loss_type == "giou"
    assert type(ours.anchor_matcher) is type(ref.anchor_matcher)
    assert ours.anchor_matcher.topk == ref.anchor_matcher.topk == 18
    assert ours.iou_branch and ref.iou_branch and ours.head.iou_branch
    solver = yaml_cfg.SOLVER
    assert cfg.lr_multiplier.warmup_length == solver.WARMUP_ITERS / solver.MAX_ITER
    assert cfg.optimizer.lr == solver.BASE_LR
    assert dict(cfg.train.clip_gradients) == {
        "enabled": True,
        "clip_type": solver.CLIP_GRADIENTS.CLIP_TYPE,
        "clip_value": solver.CLIP_GRADIENTS.CLIP_VALUE,
        "norm_type": solver.CLIP_GRADIENTS.NORM_TYPE,
    }


def test_lazy_libra_efl_retinanet_twin_matches_its_yaml():
    """The lazy Libra RetinaNet + EFL builds the YAML's model: the same parameters and buffers,
    BFP refined at the same level, Balanced L1 with the same parameters and form, the same EFL."""
    cfg = LazyConfig.load(
        os.path.join(REPO_ROOT, "configs/LT-Shapes/lazy/libra_efl_retinanet_R_18_FPN_tiny.py")
    )
    yaml_cfg, ref = _yaml_cfg_and_model("configs/LT-Shapes/libra_efl_retinanet_R_18_FPN_tiny.yaml")
    ours = instantiate(cfg.model)
    assert _state_shapes(ours) == _state_shapes(ref)
    assert ours.backbone.refine_level == ref.backbone.refine_level == 1
    assert ours.box_reg_loss_type == ref.box_reg_loss_type == "balanced_l1"
    assert ours.balanced_l1 == ref.balanced_l1
    assert (ours.efl.gamma_b, ours.efl.scale) == (ref.efl.gamma_b, ref.efl.scale) == (2.0, 8.0)
    assert cfg.optimizer.lr == yaml_cfg.SOLVER.BASE_LR
    assert cfg.dataloader.train.repeat_threshold == yaml_cfg.DATALOADER.REPEAT_THRESHOLD
