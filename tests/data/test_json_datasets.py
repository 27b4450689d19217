"""A user's COCO-format dataset registered without code (``--dataset NAME:JSON:IMAGE_ROOT``): the
spec, the format detection, the training statistics and groups, the LVIS-format evaluation copy
(official ``lvis`` evaluation, APr / APc / APf, the per-class report), and end to end through
``train_net.py``, ``projects/demo.py`` and ``projects/diagnose.py``, and ``lazy_train_net.py``."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from conftest import TINY_INPUT
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluators, LVISEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from libra_d2.data.class_frequency import training_class_image_counts
from libra_d2.data.datasets.json_datasets import (
    attach_frequency_metadata,
    category_counts,
    lvis_format_copy,
    parse_dataset_spec,
    register_json_dataset,
)
from libra_d2.evaluation import PerClassAPReport
from libra_d2.evaluation.per_class_ap import per_class_ap
from libra_d2.utils.compat import patch_lvis_numpy_aliases

#: non-contiguous COCO ids; in how many training images each category appears
CATEGORIES = [(3, "circle", 6), (7, "square", 3), (11, "star", 1)]


def write_coco_dataset(root, split, num_images, seed=0):
    """``root/<split>.json`` and its images: category k in the first ``count_k`` images (one box
    each), plus a crowd box of the first category in image 0."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        name = "{}_{:03d}.png".format(split, i)
        cv2.imwrite(
            os.path.join(root, "images", name), rng.randint(0, 255, (64, 80, 3), dtype=np.uint8)
        )
        images.append({"id": i + 1, "file_name": name, "height": 64, "width": 80})
        for k, (cat_id, _, count) in enumerate(CATEGORIES):
            if i < count:
                x, y = 4 + 20 * k, 8 + 2 * i
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": cat_id,
                        "bbox": [x, y, 16.0, 20.0],
                        "iscrowd": 0,
                    }
                )
    annotations.append(
        {
            "id": len(annotations) + 1,
            "image_id": 1,
            "category_id": 3,
            "bbox": [60.0, 40.0, 10.0, 10.0],
            "iscrowd": 1,
            "area": 100.0,
        }
    )
    path = os.path.join(root, split + ".json")
    with open(path, "w") as f:
        json.dump(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": i, "name": n} for i, n, _ in CATEGORIES],
            },
            f,
        )
    return path


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBRA_D2_CACHE", str(tmp_path / "cache"))
    root = str(tmp_path / "data")
    train = write_coco_dataset(root, "train", 6)
    val = write_coco_dataset(root, "val", 6, seed=1)
    tag = "jd{}".format(abs(hash(str(tmp_path))) % 10**8)  # catalogs are process-wide
    return {
        "root": root,
        "train": "{}_train:{}:{}/images".format(tag, train, root),
        "val": "{}_val:{}:{}/images".format(tag, val, root),
        "names": (tag + "_train", tag + "_val"),
    }


def test_spec_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="NAME:JSON:IMAGE_ROOT"):
        parse_dataset_spec("only_a_name")
    with pytest.raises(FileNotFoundError, match="no annotation file"):
        parse_dataset_spec("x:{}/missing.json:{}".format(tmp_path, tmp_path))
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no image folder"):
        parse_dataset_spec("x:{}:{}/missing".format(tmp_path / "a.json", tmp_path))
    with pytest.raises(ValueError, match="not a COCO- or LVIS-format"):
        register_json_dataset(
            parse_dataset_spec("x_bad:{}:{}".format(tmp_path / "a.json", tmp_path))
        )


def test_registration_statistics_and_groups(dataset):
    train_name, val_name = dataset["names"]
    assert register_json_dataset(parse_dataset_spec(dataset["train"])) == "coco"
    register_json_dataset(parse_dataset_spec(dataset["train"]))  # the same spec again: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_json_dataset(parse_dataset_spec(dataset["val"].replace("_val:", "_train:")))
    register_json_dataset(parse_dataset_spec(dataset["val"]))
    meta = MetadataCatalog.get(train_name)
    assert meta.thing_classes == ["circle", "square", "star"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 11: 2}
    records = DatasetCatalog.get(train_name)
    assert len(records) == 6 and records[0]["annotations"][0]["category_id"] == 0

    attach_frequency_metadata([train_name], [val_name], rare_max=1, common_max=3)
    assert meta.category_frequency == ["f", "c", "r"]
    assert meta.class_image_count == [
        {"id": 3, "image_count": 6, "instance_count": 6},  # the crowd box is not counted
        {"id": 7, "image_count": 3, "instance_count": 3},
        {"id": 11, "image_count": 1, "instance_count": 1},
    ]
    # what RFS, BCR and the methods' per-group logs read
    assert training_class_image_counts([train_name], 3).tolist() == [6.0, 3.0, 1.0]
    val = MetadataCatalog.get(val_name)
    assert val.category_frequency == ["f", "c", "r"]  # the training groups
    assert val.evaluator_type == "lvis" and os.path.isfile(val.json_file)
    assert os.path.dirname(val.json_file).startswith(os.environ["LIBRA_D2_CACHE"])
    # attaching again (e.g. another process) finds the same values; other groups are refused
    attach_frequency_metadata([train_name], [val_name], rare_max=1, common_max=3)
    with pytest.raises(ValueError, match="category_frequency"):
        attach_frequency_metadata([train_name], [val_name])


def test_lvis_format_copy_is_exhaustive():
    data = {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 3]},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1], "iscrowd": 1},
        ],
        "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }
    copy = lvis_format_copy(data, {3: "r", 7: "f"})
    assert [im["neg_category_ids"] for im in copy["images"]] == [[3], [3, 7]]
    assert all(im["not_exhaustive_category_ids"] == [] for im in copy["images"])
    assert [a["id"] for a in copy["annotations"]] == [1] and copy["annotations"][0]["area"] == 6.0
    assert [c["frequency"] for c in copy["categories"]] == ["r", "f"]
    assert category_counts(data)[0] == {"id": 3, "image_count": 0, "instance_count": 0}


def _predictions(records, drop_class=None):
    inputs, outputs = [], []
    for r in records:
        keep = [a for a in r["annotations"] if a["category_id"] != drop_class]
        inst = Instances((r["height"], r["width"]))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in keep]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(keep))
        inst.pred_classes = torch.tensor([a["category_id"] for a in keep], dtype=torch.long)
        inputs.append({"image_id": r["image_id"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def test_official_lvis_evaluation_by_training_groups(dataset, tmp_path):
    """Perfect detections give AP 100 in every group; missing the rare class's boxes gives APr 0
    and leaves APc and APf at 100. With the copy's negatives, a false positive on an image
    without the class counts (exhaustive evaluation)."""
    train_name, val_name = dataset["names"]
    for spec in (dataset["train"], dataset["val"]):
        register_json_dataset(parse_dataset_spec(spec))
    attach_frequency_metadata([train_name], [val_name], rare_max=1, common_max=3)
    patch_lvis_numpy_aliases()
    records = DatasetCatalog.get(val_name)
    # the crowd box is ignored by Detectron2's loader in training only: drop it from predictions
    for r in records:
        r["annotations"] = [a for a in r["annotations"] if not a.get("iscrowd", 0)]

    out = tmp_path / "eval"

    def evaluate(inputs, outputs):
        evaluator = DatasetEvaluators(
            [LVISEvaluator(val_name, output_dir=str(out)), PerClassAPReport(val_name, str(out))]
        )
        evaluator.reset()
        evaluator.process(inputs, outputs)
        return evaluator.evaluate()["bbox"]

    perfect = evaluate(*_predictions(records))
    assert perfect["AP"] == pytest.approx(100.0)
    for group in ("APr", "APc", "APf"):
        assert perfect[group] == pytest.approx(100.0), group
    no_rare = evaluate(*_predictions(records, drop_class=2))
    assert no_rare["APr"] == pytest.approx(0.0)
    assert no_rare["APc"] == pytest.approx(100.0) and no_rare["APf"] == pytest.approx(100.0)
    # the per-class report of the last evaluation: one row per class, the training counts
    with open(out / "per_class_ap.json") as f:
        rows = {r["name"]: r for r in json.load(f)}
    assert {n: (r["frequency"], r["image_count"]) for n, r in rows.items()} == {
        "circle": ("f", 6),
        "square": ("c", 3),
        "star": ("r", 1),
    }
    assert rows["star"]["AP"] == pytest.approx(0.0) and rows["square"]["AP"] == pytest.approx(100.0)
    table = (out / "per_group_ap.md").read_text()
    assert "| r | 1 | 0.0 | 1-1 |" in table and "| f | 1 | 100.0 | 6-6 |" in table
    assert (out / "per_class_ap.png").stat().st_size > 1000
    # a confident "star" (rare) box on every image that has none: false positives now
    inputs, outputs = _predictions(records)
    for r, output in zip(records, outputs):
        if not any(a["category_id"] == 2 for a in r["annotations"]):
            inst = output["instances"]
            extra = Instances(inst.image_size)
            extra.pred_boxes = Boxes(torch.tensor([[40.0, 30.0, 60.0, 50.0]]))
            extra.scores = torch.tensor([2.0])
            extra.pred_classes = torch.tensor([2])
            output["instances"] = Instances.cat([inst, extra])
    assert evaluate(inputs, outputs)["APr"] < 50.0


def test_train_net_with_registered_datasets(dataset, run_script, tmp_path):
    """No Python by the user: register on the command line, train two iterations, evaluate with
    APr / APc / APf by the training groups."""
    train_name, val_name = dataset["names"]
    out = tmp_path / "run"
    run_script(
        "projects/train_net.py",
        "--config-file",
        "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml",
        "--dataset",
        dataset["train"],
        "--dataset",
        dataset["val"],
        "DATASETS.TRAIN",
        "('{}',)".format(train_name),
        "DATASETS.TEST",
        "('{}',)".format(val_name),
        "DATASETS.FREQUENCY_GROUPS.RARE_MAX_IMAGES",
        "1",
        "DATASETS.FREQUENCY_GROUPS.COMMON_MAX_IMAGES",
        "3",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "3",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "OUTPUT_DIR",
        str(out),
        *TINY_INPUT,
    )
    with open(out / "eval_results.json") as f:
        results = json.load(f)["bbox"]
    assert {"AP", "AP50", "AP75", "APr", "APc", "APf"} <= set(results)
    for name in ("per_class_ap.png", "per_class_ap.json", "per_group_ap.md"):
        assert (out / "inference" / val_name / name).is_file(), name
    # look at the trained model's detections on the user's images, class names from --dataset
    pictures = tmp_path / "pictures"
    run_script(
        "projects/demo.py",
        "--config-file",
        str(out / "config.yaml"),
        "--dataset",
        dataset["val"],
        "--input",
        os.path.join(dataset["root"], "images", "val_00*.png"),
        "--output",
        str(pictures),
        "--confidence-threshold",
        "0.0",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
    )
    assert len(os.listdir(pictures)) == 6
    # diagnose the imbalances of the user's data with the trained checkpoint
    report = tmp_path / "diagnosis"
    run_script(
        "projects/diagnose.py",
        "--config-file",
        str(out / "config.yaml"),
        "--dataset",
        dataset["train"],
        "--output",
        str(report),
        "--num-images",
        "4",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
    )
    page = (report / "report.md").read_text()
    for section in ("Class", "Sample", "Objective", "Feature"):
        assert "## {} imbalance".format(section) in page
    for name in ("class", "sample", "objective", "feature"):
        assert (report / "{}_imbalance.png".format(name)).is_file(), name
    with open(report / "report.json") as f:
        measured = json.load(f)
    # the user's counts, by the groups of the training run's thresholds (1 and 3 images)
    assert [(c["name"], c["images"], c["group"]) for c in measured["class"]["classes"]] == [
        ("circle", 6, "f"),
        ("square", 3, "c"),
        ("star", 1, "r"),
    ]


def test_lazy_train_net_with_registered_datasets(dataset, run_script, tmp_path):
    """The same flag for the lazy launcher: the config's loaders and evaluator name the
    datasets."""
    train_name, val_name = dataset["names"]
    out = tmp_path / "lazy"
    run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        "configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py",
        "--dataset",
        dataset["train"],
        "--dataset",
        dataset["val"],
        "dataloader.train.dataset.names=" + train_name,
        "dataloader.test.dataset.names=" + val_name,
        "dataloader.evaluator.dataset_name=" + val_name,
        "dataloader.train.total_batch_size=2",
        "model.roi_heads.num_classes=3",
        "train.max_iter=2",
        "train.output_dir=" + str(out),
        "dataloader.train.mapper.augmentations.0.short_edge_length=64",
        "dataloader.train.mapper.augmentations.0.max_size=64",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "dataloader.test.mapper.augmentations.0.max_size=64",
    )
    with open(out / "eval_results.json") as f:
        results = json.load(f)["bbox"]
    assert {"AP", "APr", "APc", "APf"} <= set(results)


def test_per_class_ap_is_lvis_mean_over_valid_precision():
    precision = np.full((2, 3, 2, 4), -1.0)  # (IoU, recall, category, area)
    precision[:, :, 0, 0] = [[1.0, 0.5, 0.0], [1.0, 1.0, 0.5]]
    precision[0, 0, 0, 1] = 0.0  # another area: not counted
    ap = per_class_ap(precision)
    assert ap[0] == pytest.approx(4.0 / 6) and np.isnan(ap[1])
