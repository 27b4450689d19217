"""Every YAML config in configs/ merges into a libra_d2 config (no unknown keys) and builds its
model; every lazy config loads and instantiates its model."""

import glob
import operator
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


#: Lazy configs that read the LVIS v1 training set's class frequencies when they are instantiated
NEEDS_LVIS_CLASS_COUNTS = {
    "configs/LVISv1-InstanceSegmentation/lazy/libra_mask_rcnn_R_50_FPN_1x.py"
}


def _skip_without_lvis_class_counts(path):
    """Detectron2 main's LVIS metadata has ``class_image_count``; 0.6 reads it from the json."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if path not in NEEDS_LVIS_CLASS_COUNTS:
        return
    if MetadataCatalog.get("lvis_v1_train").get("class_image_count", None) is not None:
        return
    try:
        DatasetCatalog.get("lvis_v1_train")
    except OSError:
        pytest.skip("no class_image_count metadata and no LVIS v1 json here")


def test_configs_found():
    assert len(YAMLS) >= 10 and LAZY


def _yaml_cfg_and_model(path):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, path))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg, build_model(cfg)


def _clip_of(yaml_cfg):
    """A YAML config's SOLVER.CLIP_GRADIENTS as a lazy config's ``train.clip_gradients``."""
    clip = yaml_cfg.SOLVER.CLIP_GRADIENTS
    return {
        "enabled": clip.ENABLED,
        "clip_type": clip.CLIP_TYPE,
        "clip_value": clip.CLIP_VALUE,
        "norm_type": clip.NORM_TYPE,
    }


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
    _skip_without_lvis_class_counts(path)
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, path))
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


LIBRA_RCNN = (
    "backbone.refine_level",
    "backbone.refine_type",
    "roi_heads.sampling",
    "roi_heads.batch_size_per_image",
    "roi_heads.mask_on",
    "roi_heads.box_predictor.box_reg_loss_type",
    "roi_heads.box_predictor.balanced_l1",
    "roi_heads.box_predictor.cls_loss_type",
    "roi_heads.box_predictor.test_score_thresh",
    "proposal_generator.post_nms_topk",
)
LIBRA_RPN = (
    "backbone.refine_level",
    "proposal_generator.sampling",
    "proposal_generator.box_reg_loss_type",
    "proposal_generator.balanced_l1",
    "proposal_generator.pre_nms_topk",
    "proposal_generator.post_nms_topk",
)
DENSE = ("test_score_thresh", "max_detections_per_image", "box_reg_loss_type", "smooth_l1_beta")
EFL = DENSE + ("efl.gamma_b", "efl.scale", "efl.alpha", "loss_normalizer_type", "frequency_groups")


def _same(a, b):
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.parametrize(
    "lazy,yaml,attributes",
    [
        (
            "LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py",
            "LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml",
            (),
        ),
        (
            "LT-Shapes/lazy/libra_faster_rcnn_R_18_FPN_tiny.py",
            "LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml",
            LIBRA_RCNN + ("roi_heads.box_predictor.bcr_class_weights",),
        ),
        (
            "LT-Shapes/lazy/libra_mask_rcnn_R_18_FPN_tiny.py",
            "LT-Shapes/libra_mask_rcnn_R_18_FPN_tiny.yaml",
            LIBRA_RCNN + ("roi_heads.box_predictor.bcr_class_weights",),
        ),
        (
            "LT-Shapes/lazy/libra_rpn_R_18_FPN_tiny.py",
            "LT-Shapes/libra_rpn_R_18_FPN_tiny.yaml",
            LIBRA_RPN,
        ),
        (
            "LT-Shapes/lazy/retinanet_R_18_FPN_tiny.py",
            "LT-Shapes/retinanet_R_18_FPN_tiny.yaml",
            DENSE,
        ),
        (
            "LT-Shapes/lazy/efl_retinanet_R_18_FPN_tiny.py",
            "LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml",
            EFL,
        ),
        (
            "LT-Shapes/lazy/libra_retinanet_R_18_FPN_tiny.py",
            "LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml",
            DENSE + ("backbone.refine_level", "balanced_l1"),
        ),
        (
            "COCO-Detection/lazy/libra_efl_retinanet_R_50_FPN_1x.py",
            "COCO-Detection/libra_efl_retinanet_R_50_FPN_1x.yaml",
            EFL + ("backbone.refine_level", "balanced_l1"),
        ),
        (
            "LVISv1-Detection/lazy/efl_improved_baseline_R_50_FPN_2x.py",
            "LVISv1-Detection/efl_improved_baseline_R_50_FPN_2x.yaml",
            EFL + ("iou_branch", "anchor_matcher.topk"),
        ),
        (
            "COCO-Detection/lazy/faster_rcnn_R_50_FPN_1x.py",
            "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
            (),
        ),
        (
            "COCO-Detection/lazy/libra_faster_rcnn_R_50_FPN_1x.py",
            "COCO-Detection/libra_faster_rcnn_R_50_FPN_1x.yaml",
            LIBRA_RCNN,
        ),
        (
            "COCO-Detection/lazy/libra_rpn_R_50_FPN_1x.py",
            "COCO-Detection/libra_rpn_R_50_FPN_1x.yaml",
            LIBRA_RPN,
        ),
        (
            "COCO-InstanceSegmentation/lazy/libra_mask_rcnn_R_50_FPN_1x.py",
            "COCO-InstanceSegmentation/libra_mask_rcnn_R_50_FPN_1x.yaml",
            LIBRA_RCNN,
        ),
        (
            "COCO-Detection/lazy/libra_retinanet_R_50_FPN_1x.py",
            "COCO-Detection/libra_retinanet_R_50_FPN_1x.yaml",
            DENSE + ("backbone.refine_level", "balanced_l1"),
        ),
        (
            "LVISv1-Detection/lazy/efl_retinanet_R_50_FPN_2x.py",
            "LVISv1-Detection/efl_retinanet_R_50_FPN_2x.yaml",
            EFL,
        ),
        (
            "LVISv1-InstanceSegmentation/lazy/mask_rcnn_R_50_FPN_1x.py",
            "LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
            ("roi_heads.mask_on", "roi_heads.box_predictor.test_topk_per_image"),
        ),
        (
            "LVISv1-InstanceSegmentation/lazy/libra_mask_rcnn_R_50_FPN_1x.py",
            "LVISv1-InstanceSegmentation/libra_mask_rcnn_R_50_FPN_1x.yaml",
            LIBRA_RCNN + ("roi_heads.box_predictor.bcr_class_weights",),
        ),
    ],
    ids=lambda x: os.path.basename(x)[:-3] if isinstance(x, str) and x.endswith(".py") else "",
)
def test_lazy_twins_match_their_yaml(lazy, yaml, attributes):
    """Each lazy twin builds its YAML's model (the same class, parameters and buffers, by name and
    shape) with the same settings of its method (``attributes``: Libra's BFP, samplers and losses,
    the mask branch, the RPN's, EFL's), and trains with the YAML's learning rate and iterations."""
    _skip_without_lvis_class_counts(os.path.join("configs", lazy))
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs", lazy))
    yaml_cfg, ref = _yaml_cfg_and_model(os.path.join("configs", yaml))
    ours = instantiate(cfg.model)
    assert type(ours) is type(ref)
    assert _state_shapes(ours) == _state_shapes(ref)
    for name in attributes:
        a, b = operator.attrgetter(name)(ours), operator.attrgetter(name)(ref)
        assert _same(a, b), (name, a, b)
    if hasattr(ref, "roi_heads"):
        assert type(ours.roi_heads) is type(ref.roi_heads)
        assert type(ours.roi_heads.box_predictor) is type(ref.roi_heads.box_predictor)
    if hasattr(ref, "head") and hasattr(ref.head, "cls_score"):  # the classifier prior
        assert torch.equal(ours.head.cls_score.bias, ref.head.cls_score.bias)
    assert cfg.optimizer.lr == yaml_cfg.SOLVER.BASE_LR
    assert cfg.train.max_iter == yaml_cfg.SOLVER.MAX_ITER
    if yaml_cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler":
        assert cfg.dataloader.train.repeat_threshold == yaml_cfg.DATALOADER.REPEAT_THRESHOLD
    assert cfg.train.output_dir.startswith("output/")


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
    yaml_cfg, ref = _yaml_cfg_and_model(yaml)
    ours = instantiate(cfg.model)
    assert _state_shapes(ours) == _state_shapes(ref)
    assert ours.roi_heads.positive_fractions == ref.roi_heads.positive_fractions == (0.5, 0.1)
    rga = instantiate(cfg.train.hooks[0])
    assert isinstance(rga, GradientAnnealing) and rga.lambda0 == 7.0 and not rga.constant
    # the whole-model clip that RGA's configs carry (it keeps lambda 7 from diverging)
    assert dict(cfg.train.clip_gradients) == _clip_of(yaml_cfg)
    assert yaml_cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"


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
    yaml_cfg, ref = _yaml_cfg_and_model(yaml)
    ours = instantiate(cfg.model)
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
    # the whole-model clip that RGA's configs carry (it keeps lambda 7 from diverging)
    assert dict(cfg.train.clip_gradients) == _clip_of(yaml_cfg)
    assert yaml_cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"


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
    yaml_cfg, ref = _yaml_cfg_and_model(yaml)
    ours = instantiate(cfg.model)
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
    # the whole-model clip that RGA's configs carry (it keeps lambda 7 from diverging)
    assert dict(cfg.train.clip_gradients) == _clip_of(yaml_cfg)
    assert yaml_cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"


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
    assert dict(cfg.train.clip_gradients) == _clip_of(yaml_cfg)


@pytest.mark.parametrize(
    "name",
    [
        "LT-Shapes/{}/loce_faster_rcnn_R_18_FPN_tiny_stage1",
        "LT-Shapes/{}/loce_faster_rcnn_R_18_FPN_tiny_stage2",
        "LVISv1-InstanceSegmentation/{}/loce_mask_rcnn_R_50_FPN_stage1",
        "LVISv1-InstanceSegmentation/{}/loce_mask_rcnn_R_50_FPN_stage2",
    ],
)
def test_lazy_loce_twins_match_their_yaml(name):
    """The lazy LOCE stages build their YAML's model: same parameters and buffers (names and
    shapes, so a stage 1 of either kind feeds a stage 2 of either kind), the same ROI heads and box
    predictor settings (the Equilibrium Loss in stage 2 only)."""
    from libra_d2.modeling.roi_heads.loce_roi_heads import LOCEROIHeads

    stage = name[-6:]
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs", name.format("lazy") + ".py"))
    yaml_cfg, ref = _yaml_cfg_and_model(
        os.path.join("configs", name.format("").replace("//", "/")) + ".yaml"
    )
    ours = instantiate(cfg.model)
    assert _state_shapes(ours) == _state_shapes(ref)
    assert isinstance(ours.roi_heads, LOCEROIHeads) and isinstance(ref.roi_heads, LOCEROIHeads)
    assert ours.roi_heads.memory_feature_shape == ref.roi_heads.memory_feature_shape
    assert ours.roi_heads.num_jitter == ref.roi_heads.num_jitter
    a, b = ours.roi_heads.box_predictor, ref.roi_heads.box_predictor
    assert a.use_equilibrium_loss == b.use_equilibrium_loss == (stage == "stage2")
    assert a.frequency_groups == b.frequency_groups and a.log_period == b.log_period
    assert torch.equal(a.mean_score.score, b.mean_score.score)
    assert (a.test_score_thresh, a.test_topk_per_image) == (
        b.test_score_thresh,
        b.test_topk_per_image,
    )
    assert cfg.optimizer.lr == yaml_cfg.SOLVER.BASE_LR
    assert cfg.train.max_iter == yaml_cfg.SOLVER.MAX_ITER
    assert list(cfg.lr_multiplier.scheduler.milestones) == list(yaml_cfg.SOLVER.STEPS)
    rfs = yaml_cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    threshold = cfg.dataloader.train.get("repeat_threshold", 0)
    assert threshold == (yaml_cfg.DATALOADER.REPEAT_THRESHOLD if rfs else 0)


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
