"""Bad input fails early, once, with an error that names the culprit."""
import argparse
import json
import os
import shutil

import pytest
from detectron2.data import DatasetCatalog

from libra_d2.data import CheckedDatasetMapper, RecordError
from libra_d2.engine import ConfigError, DatasetError, setup_cfg

FASTER = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _args(*opts, config=FASTER):
    return argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, config) if config else "", opts=list(opts),
        eval_only=False, resume=False, num_gpus=1, num_machines=1, machine_rank=0,
    )


def test_config_key_typo_names_key_and_suggests(lt_shapes_tiny):
    with pytest.raises(ConfigError) as e:
        setup_cfg(_args("MODEL.ROI_HEADS.NUM_CLASES", "3"), do_default_setup=False)
    msg = str(e.value)
    assert "MODEL.ROI_HEADS.NUM_CLASES" in msg and "MODEL.ROI_HEADS.NUM_CLASSES" in msg


def test_config_file_typo_names_file(tmp_path, lt_shapes_tiny):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_BASE_: {}\nSOLVER:\n  MAX_ITERS: 3\n".format(os.path.join(REPO_ROOT, FASTER)))
    with pytest.raises(ConfigError) as e:
        setup_cfg(_args(config=str(bad)), do_default_setup=False)
    assert "SOLVER.MAX_ITERS" in str(e.value) and str(bad) in str(e.value)
    assert "SOLVER.MAX_ITER" in str(e.value).split("Did you mean")[1]


def test_missing_config_file():
    with pytest.raises(ConfigError, match="no_such.yaml"):
        setup_cfg(_args(config="configs/no_such.yaml"), do_default_setup=False)


def test_unknown_dataset_name(lt_shapes_tiny):
    with pytest.raises(DatasetError) as e:
        setup_cfg(_args("DATASETS.TRAIN", "('lt_shape_train',)"), do_default_setup=False)
    assert "lt_shape_train" in str(e.value) and "lt_shapes_train" in str(e.value)


def test_missing_dataset_files(tmp_path):
    from libra_d2.data.lt_shapes import register_lt_shapes

    register_lt_shapes(str(tmp_path / "nowhere" / "lt_shapes"))
    try:
        with pytest.raises(DatasetError) as e:
            setup_cfg(_args(), do_default_setup=False)
        assert str(tmp_path / "nowhere") in str(e.value) and "make data" in str(e.value)
    finally:
        register_lt_shapes()


def test_empty_annotation_file(tmp_path, lt_shapes_tiny):
    from libra_d2.data.lt_shapes import register_lt_shapes

    root = tmp_path / "lt_shapes"
    shutil.copytree(os.path.join(lt_shapes_tiny, "lt_shapes"), root)
    train_json = root / "lt_shapes_train.json"
    data = json.loads(train_json.read_text())
    data["annotations"] = []
    train_json.write_text(json.dumps(data))
    register_lt_shapes(str(root))
    try:
        with pytest.raises(ValueError) as e:
            DatasetCatalog.get("lt_shapes_train")
        assert "lt_shapes_train.json" in str(e.value)
    finally:
        register_lt_shapes(os.path.join(lt_shapes_tiny, "lt_shapes"))


def test_unreadable_image_names_file(tmp_path, lt_shapes_tiny):
    cfg = setup_cfg(_args(), do_default_setup=False)
    record = dict(DatasetCatalog.get("lt_shapes_val")[0])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    record["file_name"] = str(broken)
    with pytest.raises(RecordError) as e:
        CheckedDatasetMapper(cfg, is_train=True)(record)
    assert str(broken) in str(e.value)
