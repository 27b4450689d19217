"""What dev/install_env.py promises: the stack imports, libra_d2 registers its components, and the
evaluators fit the installed Detectron2 (the compiled ops themselves: test_compiled_ops.py)."""

import pytest


def test_imports_and_config():
    import detectron2
    from detectron2.config import get_cfg

    import libra_d2

    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    assert "BFP" in cfg.MODEL
    cfg.MODEL.BFP.REFINE_LEVEL = 1
    libra_d2.add_libra_config(cfg)  # idempotent: keeps merged values
    assert cfg.MODEL.BFP.REFINE_LEVEL == 1
    assert detectron2.__version__


def test_datasets_registered():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import libra_d2  # noqa: F401

    for name in ("lt_shapes_train", "lt_shapes_val"):
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).evaluator_type == "lvis"


def test_model_zoo_configs_installed():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    assert path.endswith(".yaml")


def test_coco_evaluator_uses_official_cocoeval_without_compiled_ops(lt_shapes_tiny):
    import os

    from detectron2.config import get_cfg
    from detectron2.data import MetadataCatalog

    from libra_d2.evaluation import build_evaluator
    from libra_d2.utils.compat import HAS_FAST_COCOEVAL

    # LT-Shapes' LVIS-format JSON is also valid COCO format: evaluate it as a COCO dataset.
    name = "lt_shapes_val_as_coco"
    MetadataCatalog.get(name).set(
        json_file=os.path.join(lt_shapes_tiny, "lt_shapes", "lt_shapes_val.json"),
        evaluator_type="coco",
    )
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(lt_shapes_tiny)
    (evaluator,) = build_evaluator(cfg, name)._evaluators
    assert evaluator._use_fast_impl is HAS_FAST_COCOEVAL
    if not HAS_FAST_COCOEVAL:
        from detectron2 import _C

        with pytest.raises(AttributeError, match="COCOevalAccumulate.*compiled"):
            _C.COCOevalAccumulate


def test_unknown_evaluator_type_is_clear():
    from detectron2.config import get_cfg
    from detectron2.data import MetadataCatalog

    from libra_d2.evaluation import build_evaluator

    MetadataCatalog.get("some_unevaluable_set").set(evaluator_type="cityscapes_panoptic")
    with pytest.raises(ValueError, match="some_unevaluable_set.*cityscapes_panoptic"):
        build_evaluator(get_cfg(), "some_unevaluable_set")


def test_lvis_eval_works_on_current_numpy():
    import lvis.eval as lvis_eval
    import numpy as np

    import libra_d2  # noqa: F401  (applies the patch)

    assert lvis_eval.np.float is float
    assert lvis_eval.np.zeros(2).dtype == np.zeros(2).dtype
    assert not hasattr(np, "float") or np.__version__ < "1.24"
