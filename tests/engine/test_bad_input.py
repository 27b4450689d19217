"""Bad input fails early, once, with an error that names the culprit."""

import argparse
import json
import os
import shutil

import pytest
from detectron2.data import DatasetCatalog

from libra_d2.data import CheckedDatasetMapper, RecordError
from libra_d2.engine import ConfigError, DatasetError, setup_cfg
from libra_d2.engine.launch import launch

FASTER = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _args(*opts, config=FASTER):
    return argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, config) if config else "",
        opts=list(opts),
        eval_only=False,
        resume=False,
        num_gpus=1,
        num_machines=1,
        machine_rank=0,
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
    from libra_d2.data.datasets.lt_shapes import register_lt_shapes

    register_lt_shapes(str(tmp_path / "nowhere" / "lt_shapes"))
    try:
        with pytest.raises(DatasetError) as e:
            setup_cfg(_args(), do_default_setup=False)
        assert str(tmp_path / "nowhere") in str(e.value) and "make data" in str(e.value)
    finally:
        register_lt_shapes()


def test_empty_annotation_file(tmp_path, lt_shapes_tiny):
    from libra_d2.data.datasets.lt_shapes import register_lt_shapes

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


def test_wrong_class_count_stops_before_anything_is_written(run_script, tmp_path):
    """NUM_CLASSES 20 for LT-Shapes' 32 categories: refused at set-up (not an IndexError at
    iteration 0); an earlier run's config.yaml in OUTPUT_DIR is left as it was."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("the earlier run's config\n")
    proc = run_script(
        "projects/train_net.py",
        "--config-file",
        FASTER,
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "20",
        "OUTPUT_DIR",
        str(out),
        "SOLVER.MAX_ITER",
        "2",
        check=False,
    )
    assert proc.returncode != 0
    assert "has 32 categories but MODEL.ROI_HEADS.NUM_CLASSES = 20" in proc.stdout
    assert "category_id outside [0, 20)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]
    assert (out / "config.yaml").read_text() == "the earlier run's config\n"


def test_missing_image_and_degenerate_boxes_through_train_net(run_script, tmp_path, lt_shapes_tiny):
    """A copy of LT-Shapes with one image deleted and one degenerate box: the missing file is
    named before training; with the image back, the box is reported and dropped, and training
    runs."""
    import subprocess
    import sys

    root = tmp_path / "datasets"
    shutil.copytree(os.path.join(lt_shapes_tiny, "lt_shapes"), root / "lt_shapes")
    train_json = root / "lt_shapes" / "lt_shapes_train.json"
    data = json.loads(train_json.read_text())
    data["annotations"][0]["bbox"][2] = 0.0  # zero width
    train_json.write_text(json.dumps(data))
    image = root / "lt_shapes" / data["images"][0]["file_name"]
    saved = image.read_bytes()
    image.unlink()
    env = dict(os.environ, DETECTRON2_DATASETS=str(root), PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "projects/train_net.py"),
        "--config-file",
        FASTER,
        "SOLVER.MAX_ITER",
        "2",
        "DATASETS.TEST",
        "()",
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "INPUT.MAX_SIZE_TRAIN",
        "64",
        "OUTPUT_DIR",
        str(tmp_path / "run"),
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert str(image) in proc.stderr and "missing" in proc.stderr  # (LT-Shapes' loader names it)
    assert not (tmp_path / "run").exists()
    image.write_bytes(saved)
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 degenerate boxes (zero or negative width or height)" in proc.stdout
    assert (tmp_path / "run" / "model_final.pth").exists()


def test_lazy_launcher_checks_the_class_count_before_writing(run_script, tmp_path):
    out = tmp_path / "lazy"
    proc = run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        "configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py",
        "model.roi_heads.num_classes=20",
        "train.output_dir={}".format(out),
        check=False,
    )
    assert proc.returncode != 0
    assert "has 32 categories but model.roi_heads.num_classes = 20" in proc.stdout
    assert not out.exists()


def _check_on_two_ranks_worker(out_dir):
    from detectron2.utils import comm

    from libra_d2.engine.setup import check_on_main_process

    calls = []

    def check():
        calls.append(comm.get_rank())
        raise DatasetError("dataset 'x': 3 boxes are degenerate")

    try:
        check_on_main_process(check)
        outcome = "returned"
    except DatasetError as e:
        outcome = str(e)
    with open(os.path.join(out_dir, "rank{}.json".format(comm.get_rank())), "w") as f:
        json.dump({"calls": calls, "outcome": outcome}, f)


def test_data_check_runs_once_and_every_rank_stops(tmp_path):
    """The data check reads the records on the main process only; its failure stops every rank
    (none waits in a collective for a peer that stopped)."""
    launch(_check_on_two_ranks_worker, 2, args=(str(tmp_path),), use_cuda=False)
    results = [json.loads((tmp_path / "rank{}.json".format(r)).read_text()) for r in (0, 1)]
    assert [r["calls"] for r in results] == [[0], []]
    assert [r["outcome"] for r in results] == ["dataset 'x': 3 boxes are degenerate"] * 2
