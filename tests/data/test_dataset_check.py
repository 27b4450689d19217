"""The training-data check: class counts, category ids, missing images, degenerate and
out-of-image boxes (with the clip / drop / error policies), unreadable annotation files."""

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

import libra_d2
from libra_d2.data.dataset_check import (
    DatasetError,
    apply_box_policy,
    box_problem,
    check_training_data,
    num_classes_of_heads,
)


def _ann(x, y, w, h, c=0):
    return {"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "category_id": c}


def _register(tmp_path, name, records, classes=("a", "b")):
    for r in records:
        if not r.pop("missing", False):
            (tmp_path / r["file_name"]).write_bytes(b"")
        r["file_name"] = str(tmp_path / r["file_name"])
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(thing_classes=list(classes))
    return name


def _cfg(num_classes=2, policy="clip"):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.DATALOADER.BAD_BOXES = policy
    return cfg


def _record(i, *anns, missing=False):
    return {
        "file_name": "img{}.jpg".format(i),
        "image_id": i,
        "width": 100,
        "height": 80,
        "annotations": list(anns),
        "missing": missing,
    }


def test_box_problem():
    assert box_problem(_ann(10, 10, 20, 20), 100, 80) == ""
    assert box_problem(_ann(10, 10, 0, 20), 100, 80) == "degenerate"
    assert box_problem(_ann(10, 10, 20, -1), 100, 80) == "degenerate"
    assert box_problem(_ann(90, 10, 30, 20), 100, 80) == "outside"
    assert box_problem(_ann(-0.5, 0, 100.5, 80), 100, 80) == ""  # within the 1 px tolerance


def test_box_policies():
    records = [
        {
            "width": 100,
            "height": 80,
            "annotations": [
                _ann(10, 10, 20, 20),
                _ann(10, 10, 0, 5),
                _ann(90, 10, 30, 20),
                _ann(120, 10, 5, 5),
            ],
        }
    ]
    assert len(apply_box_policy(records, "drop")[0]["annotations"]) == 1
    clipped = apply_box_policy(records, "clip")[0]["annotations"]
    assert [a["bbox"] for a in clipped] == [[10, 10, 20, 20], [90, 10, 30, 20]]  # the mapper clips
    assert apply_box_policy(records, "error") == records
    assert len(records[0]["annotations"]) == 4  # the input is not changed
    with pytest.raises(ValueError, match="BAD_BOXES"):
        apply_box_policy(records, "fix")


def test_clean_dataset_gives_a_summary(tmp_path):
    name = _register(
        tmp_path, "check_clean", [_record(0, _ann(1, 1, 10, 10)), _record(1, _ann(5, 5, 20, 20, 1))]
    )
    summary = check_training_data(_cfg(), [name])
    assert "dataset 'check_clean': 2 images, 2 boxes, 2 categories" in summary


@pytest.mark.parametrize("num_classes", [1, 3])
def test_class_count_must_match_the_heads(tmp_path, num_classes):
    name = _register(tmp_path, "check_classes", [_record(0, _ann(1, 1, 10, 10, 1))])
    with pytest.raises(DatasetError) as e:
        check_training_data(_cfg(num_classes), [name])
    msg = str(e.value)
    assert "has 2 categories but MODEL.ROI_HEADS.NUM_CLASSES = {}".format(num_classes) in msg
    if num_classes == 1:  # and the id that would have failed at iteration 0
        assert "category_id outside [0, 1)" in msg


def test_retinanet_class_count_is_checked_on_its_key(tmp_path):
    cfg = _cfg()
    cfg.MODEL.META_ARCHITECTURE = "EFLRetinaNet"
    cfg.MODEL.RETINANET.NUM_CLASSES = 5
    assert num_classes_of_heads(cfg) == ("MODEL.RETINANET.NUM_CLASSES", 5)
    name = _register(tmp_path, "check_retina", [_record(0, _ann(1, 1, 10, 10))])
    with pytest.raises(DatasetError, match="MODEL.RETINANET.NUM_CLASSES = 5"):
        check_training_data(cfg, [name])


def test_bad_boxes_and_missing_images_are_counted_and_named(tmp_path):
    records = [_record(0, _ann(1, 1, 10, 10), _ann(3, 3, 0, 4)), _record(1, _ann(95, 5, 20, 20))]
    summary = check_training_data(_cfg(policy="clip"), [_register(tmp_path, "check_bad", records)])
    assert "1 degenerate boxes (zero or negative width or height), first in" in summary
    assert "img0.jpg: dropped" in summary
    assert "1 outside boxes (reaching outside the image), first in" in summary
    assert "img1.jpg: clipped to the image" in summary
    # a missing image is an error; with "error", the bad boxes are too: all in one message
    records = [
        _record(0, _ann(1, 1, 10, 10), _ann(3, 3, 0, 4)),
        _record(1, _ann(95, 5, 20, 20)),
        _record(2, _ann(1, 1, 5, 5), missing=True),
    ]
    name = _register(tmp_path, "check_bad2", records)
    with pytest.raises(DatasetError) as e:
        check_training_data(_cfg(policy="error"), [name])
    msg = str(e.value)
    assert "1 image files do not exist, e.g. {}".format(tmp_path / "img2.jpg") in msg
    assert "1 degenerate boxes" in msg and "1 outside boxes" in msg and "BAD_BOXES" in msg


def test_dataset_where_every_box_is_degenerate(tmp_path):
    name = _register(
        tmp_path, "check_all_bad", [_record(0, _ann(3, 3, 0, 4)), _record(1, _ann(3, 3, 5, -4))]
    )
    with pytest.raises(DatasetError, match="none of its 2 boxes is usable"):
        check_training_data(_cfg(), [name])


def test_annotation_file_that_is_not_json_is_named(tmp_path):
    from detectron2.data.datasets import register_coco_instances

    bad = tmp_path / "instances.json"
    bad.write_text("{ this is not json")
    if "check_not_json" in DatasetCatalog.list():
        DatasetCatalog.remove("check_not_json")
        MetadataCatalog.remove("check_not_json")
    register_coco_instances("check_not_json", {}, str(bad), str(tmp_path))
    with pytest.raises(DatasetError) as e:
        check_training_data(_cfg(), ["check_not_json"])
    assert "cannot read {}".format(bad) in str(e.value) and "JSONDecodeError" in str(e.value)


def test_class_count_of_lazy_models():
    from conftest import REPO_ROOT
    from detectron2.config import LazyConfig

    from libra_d2.data.dataset_check import num_classes_of_lazy_model

    rcnn = LazyConfig.load(REPO_ROOT + "/configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py")
    dense = LazyConfig.load(REPO_ROOT + "/configs/LT-Shapes/lazy/efl_retinanet_R_18_FPN_tiny.py")
    assert num_classes_of_lazy_model(rcnn.model) == ("model.roi_heads.num_classes", 32)
    assert num_classes_of_lazy_model(dense.model) == ("model.num_classes", 32)
    assert num_classes_of_lazy_model({}) == ("", None)
