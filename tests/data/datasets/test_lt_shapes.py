"""Tests of LT-Shapes (libra_d2/data/datasets/lt_shapes*.py): categories, plan, generator, loading
and registration.

Datasets are generated with the "tiny" preset (200 train / 64 val images of 64x64,
under a second each) into temporary directories.
"""

import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import warnings
from collections import defaultdict

import numpy as np
import pytest

from libra_d2.data.datasets import lt_shapes as lts
from libra_d2.data.datasets import lt_shapes_categories as ltc
from libra_d2.data.datasets import lt_shapes_generate as ltg
from libra_d2.data.datasets import lt_shapes_plan as ltp

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
NUM_CLASSES = 32


def _lvis_frequency(n):
    # Written out independently of the module: LVIS v1 groups by number of train images.
    if 1 <= n <= 10:
        return "r"
    if 11 <= n <= 100:
        return "c"
    if n > 100:
        return "f"
    return None  # a category without train images is not allowed


def _load(root, split):
    with open(os.path.join(root, f"lt_shapes_{split}.json")) as f:
        return json.load(f)


def _images_digest(root):
    h = hashlib.sha256()
    for split in ("train", "val"):
        names = sorted(os.listdir(os.path.join(root, split)))
        for name in names:
            h.update(f"{split}/{name}".encode())
            with open(os.path.join(root, split, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _file_bytes(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("lt")
    roots = {}
    for key, seed in (("a", 0), ("b", 0), ("c", 1)):
        roots[key] = str(base / f"tiny_{key}")
        summary = ltg.generate_lt_shapes(roots[key], seed=seed, preset="tiny", verbose=False)
        assert summary["skipped"] is False
        roots[key + "_summary"] = summary
    return roots


# ---------------------------------------------------------------- categories and plan


def test_category_table():
    cats = ltc.LT_SHAPES_CATEGORIES
    assert len(cats) == NUM_CLASSES >= 30
    assert [c["id"] for c in cats] == list(range(1, NUM_CLASSES + 1))
    assert len({c["name"] for c in cats}) == NUM_CLASSES
    assert len({c["synset"] for c in cats}) == NUM_CLASSES
    assert ltc.lt_shapes_category_names() == [c["name"] for c in cats]
    by_name = {c["name"]: c for c in cats}
    families = defaultdict(list)
    for c in cats:
        families[c["shape"]].append(c)
        partner = by_name[c["confusable_with"]]
        assert partner["shape"] == c["shape"] and partner["name"] != c["name"]
        if c["planned_frequency"] == "f":
            # every head class has a look-alike tail class in its own family
            assert partner["planned_frequency"] == "r", c["name"]
    assert len(families) == 8
    for shape, members in families.items():
        groups = {c["planned_frequency"] for c in members}
        assert "r" in groups and groups & {"f", "c"}, shape
    assert by_name["circle_red"]["planned_frequency"] == "f"
    assert by_name["circle_orange"]["planned_frequency"] == "r"


@pytest.mark.parametrize("num_train,num_val", [(800, 200), (200, 64), (400, 100)])
def test_plan_groups_and_purity(num_train, num_val):
    plan = ltp.plan_lt_shapes(seed=0, num_train=num_train, num_val=num_val)
    again = ltp.plan_lt_shapes(seed=0, num_train=num_train, num_val=num_val)
    assert plan["train"] == again["train"] and plan["val"] == again["val"]
    assert len(plan["train"]) == num_train and len(plan["val"]) == num_val
    counts = defaultdict(int)
    for cats in plan["train"]:
        assert ltp.MIN_OBJECTS <= len(cats) <= ltp.MAX_OBJECTS
        for c in set(cats):
            counts[c] += 1
    assert dict(counts) == plan["train_image_counts"]
    # the assignment realises the Zipf-like targets exactly
    assert plan["train_image_counts"] == plan["train_targets"]
    groups = defaultdict(int)
    for c in ltc.LT_SHAPES_CATEGORIES:
        f = _lvis_frequency(counts[c["id"]])
        assert f == c["planned_frequency"] == plan["frequency"][c["id"]], c["name"]
        groups[f] += 1
    assert dict(groups) == {"f": 6, "c": 12, "r": 14}
    # frequency rank order: counts are non-increasing along the rank
    ranked = sorted(ltc.LT_SHAPES_CATEGORIES, key=lambda c: c["rank"])
    seq = [counts[c["id"]] for c in ranked]
    assert seq == sorted(seq, reverse=True)
    assert seq[6] > seq[17] and seq[18] > seq[31]
    if num_train >= 400:
        assert seq[0] > seq[5]
    # val: every category, roughly balanced
    val_inst = defaultdict(int)
    for cats in plan["val"]:
        for c in cats:
            val_inst[c] += 1
    assert len(val_inst) == NUM_CLASSES
    if num_train == 800:
        assert min(val_inst.values()) >= 8
    assert max(val_inst.values()) <= 3 * min(val_inst.values())


def test_plan_depends_on_seed():
    p0 = ltp.plan_lt_shapes(seed=0, num_train=200, num_val=64)
    p1 = ltp.plan_lt_shapes(seed=1, num_train=200, num_val=64)
    assert p0["train"] != p1["train"]
    assert p0["train_image_counts"] == p1["train_image_counts"]  # group layout is seed-independent


def test_plan_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        ltp.plan_lt_shapes(seed=0, num_train=40, num_val=10)


# ---------------------------------------------------------------- generated files


def test_frequency_groups_match_train_json(tiny):
    train = _load(tiny["a"], "train")
    val = _load(tiny["a"], "val")
    img_sets, inst = defaultdict(set), defaultdict(int)
    for a in train["annotations"]:
        img_sets[a["category_id"]].add(a["image_id"])
        inst[a["category_id"]] += 1
    groups = defaultdict(list)
    for cat in train["categories"]:
        n = len(img_sets[cat["id"]])
        assert cat["image_count"] == n, cat["name"]
        assert cat["instance_count"] == inst[cat["id"]], cat["name"]
        assert cat["frequency"] == _lvis_frequency(n), (cat["name"], n)
        groups[cat["frequency"]].append(cat["name"])
    # the tiny preset keeps all three LVIS groups, several categories each
    assert {g: len(v) for g, v in groups.items()} == {"f": 6, "c": 12, "r": 14}
    assert val["categories"] == train["categories"]
    # the drawing stage placed every planned object (no category lost an image)
    plan = ltp.plan_lt_shapes(seed=0, num_train=200, num_val=64)
    assert {c["id"]: c["image_count"] for c in train["categories"]} == plan["train_image_counts"]
    assert [c["id"] for c in train["categories"]] == list(range(1, NUM_CLASSES + 1))
    for cat in train["categories"]:
        for key in ("name", "synset", "def", "frequency", "image_count", "instance_count"):
            assert key in cat
    s = tiny["a_summary"]
    assert {g: s["groups"][g]["categories"] for g in "rcf"} == {"r": 14, "c": 12, "f": 6}
    assert s["num_train_instances"] == len(train["annotations"])
    assert s["num_val_instances"] == len(val["annotations"])


def test_deterministic_and_seed_dependent(tiny):
    for name in ("lt_shapes_train.json", "lt_shapes_val.json", "params.json"):
        assert _file_bytes(tiny["a"], name) == _file_bytes(tiny["b"], name), name
    assert _images_digest(tiny["a"]) == _images_digest(tiny["b"])
    assert _file_bytes(tiny["a"], "lt_shapes_train.json") != _file_bytes(
        tiny["c"], "lt_shapes_train.json"
    )
    assert _images_digest(tiny["a"]) != _images_digest(tiny["c"])


def test_lvis_api_and_geometry(tiny):
    lvis = pytest.importorskip("lvis")
    for split in ("train", "val"):
        path = os.path.join(tiny["a"], f"lt_shapes_{split}.json")
        api = lvis.LVIS(path)
        assert len(api.get_img_ids()) == {"train": 200, "val": 64}[split]
        present = defaultdict(set)
        for ann in api.load_anns(api.get_ann_ids()):
            img = api.imgs[ann["image_id"]]
            present[ann["image_id"]].add(ann["category_id"])
            W, H = img["width"], img["height"]
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= W + 1e-6 and y + h <= H + 1e-6
            assert len(ann["segmentation"]) == 1
            poly = np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2)
            assert len(poly) >= 3
            assert np.allclose([x, y], poly.min(axis=0), atol=0.011)
            assert np.allclose([x + w, y + h], poly.max(axis=0), atol=0.011)
            px, py = poly[:, 0], poly[:, 1]
            shoelace = abs(np.dot(px, np.roll(py, -1)) - np.dot(py, np.roll(px, -1))) / 2
            assert ann["area"] == pytest.approx(shoelace, abs=0.02)
            assert 1 <= ann["category_id"] <= NUM_CLASSES
        for img in api.dataset["images"]:
            assert img["file_name"] == f"{split}/{img['id']:06d}.png"
            assert os.path.isfile(os.path.join(tiny["a"], img["file_name"]))
            assert img["not_exhaustive_category_ids"] == []
            neg = set(img["neg_category_ids"])
            assert neg and not (neg & present[img["id"]])
            assert neg | present[img["id"]] == set(range(1, NUM_CLASSES + 1))


def test_polygons_match_drawn_pixels(tiny):
    cv2 = pytest.importorskip("cv2")
    mask_utils = pytest.importorskip("pycocotools.mask")
    val = _load(tiny["a"], "val")
    palette = {name: np.array(rgb, dtype=np.float64) for name, rgb in ltc.LT_SHAPES_COLORS.items()}
    color_of = {c["id"]: c["color"] for c in val["categories"]}
    per_image = defaultdict(list)
    for a in val["annotations"]:
        per_image[a["image_id"]].append(a)  # annotations are stored in drawing order
    checked = contrast_checked = 0
    kernel = np.ones((3, 3), np.uint8)
    for img in val["images"]:
        bgr = cv2.imread(os.path.join(tiny["a"], img["file_name"]), cv2.IMREAD_COLOR)
        assert bgr.shape == (img["height"], img["width"], 3)
        rgb = bgr[:, :, ::-1].astype(np.float64)
        anns = per_image[img["id"]]
        masks = []
        for a in anns:
            rles = mask_utils.frPyObjects(a["segmentation"], img["height"], img["width"])
            masks.append(mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8))
        union = np.zeros_like(masks[0])
        for m in masks:
            union |= m
        for k, a in enumerate(anns):
            visible = masks[k].copy()
            for later in masks[k + 1 :]:
                visible &= 1 - later
            # at most 70% of an object may be hidden by later (upper) objects
            assert visible.sum() >= 0.3 * masks[k].sum() - 2, a["id"]
            core = cv2.erode(visible, kernel, iterations=1).astype(bool)
            if core.sum() < 6:
                continue
            mean = rgb[core].mean(axis=0)
            nearest = min(palette, key=lambda n: np.linalg.norm(palette[n] - mean))
            assert nearest == color_of[a["category_id"]], (img["id"], a["id"], mean)
            checked += 1
            # just outside an object that nothing overlaps, the colour is clearly different
            if all(not (masks[k] & m).any() for j, m in enumerate(masks) if j != k):
                ring = (
                    cv2.dilate(masks[k], kernel, iterations=3)
                    - cv2.dilate(masks[k], kernel, iterations=1)
                ).astype(bool)
                ring &= ~union.astype(bool)
                if ring.sum() >= 6:
                    assert np.linalg.norm(rgb[ring].mean(axis=0) - mean) > 30, (img["id"], a["id"])
                    contrast_checked += 1
    assert checked >= 0.8 * len(val["annotations"])
    assert contrast_checked >= 50


def test_val_covers_every_category(tiny):
    val = _load(tiny["a"], "val")
    inst = defaultdict(int)
    for a in val["annotations"]:
        inst[a["category_id"]] += 1
    assert set(inst) == set(range(1, NUM_CLASSES + 1))
    assert min(inst.values()) >= 6  # tiny preset; the default size gives >= 20
    assert tiny["a_summary"]["groups"]["r"]["val_instances_min"] >= 6


def _gt_as_results(gt, relabel=None):
    results = []
    for a in gt["annotations"]:
        cat = (
            a["category_id"] if relabel is None else relabel.get(a["category_id"], a["category_id"])
        )
        results.append(
            {"image_id": a["image_id"], "category_id": cat, "bbox": list(a["bbox"]), "score": 1.0}
        )
    return results


def test_lvis_eval_reports_groups(tiny):
    lvis = pytest.importorskip("lvis")
    path = os.path.join(tiny["a"], "lt_shapes_val.json")
    gt_api = lvis.LVIS(path)
    gt = _load(tiny["a"], "val")

    def evaluate(results):
        ev = lvis.LVISEval(gt_api, lvis.LVISResults(gt_api, results), iou_type="bbox")
        ev.run()
        return ev.get_results()

    perfect = evaluate(_gt_as_results(gt))
    for key in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
        assert perfect[key] > 0.99, (key, perfect[key])
    # A head-biased detector that calls every rare object by its look-alike head class
    # (same shape, close colour) loses APr, keeps APf high, and its false positives on
    # the head classes are penalised because annotation is exhaustive.
    by_name = {c["name"]: c for c in ltc.LT_SHAPES_CATEGORIES}
    freq = {c["id"]: c["frequency"] for c in gt["categories"]}
    relabel = {}
    for c in ltc.LT_SHAPES_CATEGORIES:
        partner = by_name[c["confusable_with"]]
        if freq[c["id"]] == "r" and freq[partner["id"]] in ("f", "c"):
            relabel[c["id"]] = partner["id"]
    assert len(relabel) >= 8
    biased = evaluate(_gt_as_results(gt, relabel))
    assert biased["APr"] < 0.5 * perfect["APr"]
    assert biased["APf"] < perfect["APf"]
    assert biased["APf"] > 0.5


# ---------------------------------------------------------------- idempotency and atomicity


def test_skip_overwrite_and_conflicts(tiny, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(tiny["a"], root)
    before = os.path.getmtime(os.path.join(root, "lt_shapes_train.json"))
    again = ltg.generate_lt_shapes(root, seed=0, preset="tiny", verbose=False)
    assert again["skipped"] is True
    assert again["groups"] == tiny["a_summary"]["groups"]
    assert os.path.getmtime(os.path.join(root, "lt_shapes_train.json")) == before
    with pytest.raises(FileExistsError):
        ltg.generate_lt_shapes(root, seed=1, preset="tiny", verbose=False)
    new = ltg.generate_lt_shapes(root, seed=1, preset="tiny", overwrite=True, verbose=False)
    assert new["skipped"] is False
    assert _file_bytes(root, "lt_shapes_train.json") == _file_bytes(
        tiny["c"], "lt_shapes_train.json"
    )
    assert sorted(os.listdir(tmp_path)) == ["copy"]  # no temporary directories left behind
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "something.txt").write_text("x")
    with pytest.raises(FileExistsError):
        ltg.generate_lt_shapes(str(junk), preset="tiny", verbose=False)
    assert (junk / "something.txt").exists()


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    real = ltg._write_split

    def failing(out_dir, split, *args, **kwargs):
        if split == "val":
            raise KeyboardInterrupt("simulated interruption")
        return real(out_dir, split, *args, **kwargs)

    monkeypatch.setattr(ltg, "_write_split", failing)
    root = tmp_path / "lt"
    with pytest.raises(KeyboardInterrupt):
        ltg.generate_lt_shapes(str(root), preset="tiny", num_train=150, num_val=8, verbose=False)
    assert not root.exists()
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- loader errors


def test_missing_root_error(tmp_path):
    root = str(tmp_path / "nowhere" / "lt_shapes")
    json_file = os.path.join(root, "lt_shapes_val.json")
    with pytest.raises(FileNotFoundError) as exc:
        lts.load_lt_shapes_json(json_file, root)
    assert isinstance(exc.value, lts.LTShapesNotFoundError)
    msg = str(exc.value)
    assert json_file in msg
    assert (
        f"python -m libra_d2.data.datasets.lt_shapes_generate --root {root}" in msg
        and "make data" in msg
    )


def test_empty_annotation_file_errors(tmp_path):
    empty = tmp_path / "lt_shapes_val.json"
    cats = [{"id": 1, "name": "circle_red", "frequency": "f"}]
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    with pytest.raises(ValueError, match="no images") as exc:
        lts.load_lt_shapes_json(str(empty), str(tmp_path))
    assert str(empty) in str(exc.value)
    image = {"id": 1, "file_name": "val/000001.png", "height": 64, "width": 64}
    empty.write_text(json.dumps({"images": [image], "annotations": [], "categories": cats}))
    with pytest.raises(ValueError, match="no annotations") as exc:
        lts.load_lt_shapes_json(str(empty), str(tmp_path))
    assert str(empty) in str(exc.value)


def test_missing_image_error(tiny, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(tiny["a"], root)
    os.remove(os.path.join(root, "val", "000003.png"))
    with pytest.raises(FileNotFoundError, match="000003.png"):
        lts.load_lt_shapes_json(os.path.join(root, "lt_shapes_val.json"), root)


# ---------------------------------------------------------------- detectron2 registration


@pytest.fixture
def d2_catalogs():
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog, MetadataCatalog

    # The LT-Shapes registrations before the test (other tests' datasets roots), put back after.
    names = [f"{v}_{split}" for v in lts.VARIANTS for split in lts.SPLITS]
    before = {
        n: (DatasetCatalog[n], MetadataCatalog.get(n).as_dict())
        for n in names
        if n in DatasetCatalog.list()
    }
    yield DatasetCatalog, MetadataCatalog
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        if name in before:
            loader, meta = before[name]
            DatasetCatalog.register(name, loader)
            meta.pop("name", None)
            MetadataCatalog.get(name).set(**meta)


def test_register_and_load(tiny, d2_catalogs):
    DatasetCatalog, MetadataCatalog = d2_catalogs
    lts.register_lt_shapes(tiny["a"])
    lts.register_lt_shapes(tiny["a"])  # idempotent
    val = _load(tiny["a"], "val")
    for split, n in (("train", 200), ("val", 64)):
        name = f"lt_shapes_{split}"
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "lvis"
        assert meta.thing_classes == ltc.lt_shapes_category_names()
        assert meta.json_file == os.path.join(tiny["a"], f"lt_shapes_{split}.json")
        assert meta.image_root == tiny["a"]
        assert meta.class_image_count == [
            {"id": c["id"], "image_count": c["image_count"]} for c in val["categories"]
        ]
        assert meta.category_frequency == [c["frequency"] for c in val["categories"]]
        assert sorted(set(meta.category_frequency)) == ["c", "f", "r"]
    records = DatasetCatalog.get("lt_shapes_val")
    assert len(records) == 64
    seen = set()
    for r in records:
        assert os.path.isfile(r["file_name"]), r["file_name"]
        assert os.path.normpath(r["file_name"]) == os.path.join(
            tiny["a"], "val", f"{r['image_id']:06d}.png"
        )
        assert r["height"] == r["width"] == 64
        assert r["annotations"]
        for obj in r["annotations"]:
            assert 0 <= obj["category_id"] < NUM_CLASSES
            seen.add(obj["category_id"])
    assert seen == set(range(NUM_CLASSES))
    # category ids are shifted by one relative to the JSON
    first = records[0]["annotations"][0]
    json_first = [a for a in val["annotations"] if a["image_id"] == records[0]["image_id"]][0]
    assert first["category_id"] == json_first["category_id"] - 1


def test_register_is_lazy_and_errors_clearly(tmp_path, d2_catalogs):
    DatasetCatalog, MetadataCatalog = d2_catalogs
    root = str(tmp_path / "not_generated")
    lts.register_lt_shapes(root)  # must not touch the disk
    assert not os.path.exists(root)
    # without data, the metadata describe the default-size dataset
    freqs = MetadataCatalog.get("lt_shapes_train").category_frequency
    assert (freqs.count("f"), freqs.count("c"), freqs.count("r")) == (6, 12, 14)
    with pytest.raises(
        FileNotFoundError, match="python -m libra_d2.data.datasets.lt_shapes_generate"
    ):
        DatasetCatalog.get("lt_shapes_val")


def test_default_root(monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", "/data/d2")
    assert lts.default_root() == os.path.join("/data/d2", "lt_shapes")
    monkeypatch.delenv("DETECTRON2_DATASETS")
    assert lts.default_root() == os.path.join("datasets", "lt_shapes")


def test_lvis_evaluator_end_to_end(tiny, d2_catalogs):
    torch = pytest.importorskip("torch")
    DatasetCatalog, _ = d2_catalogs
    from detectron2.evaluation import LVISEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    lts.register_lt_shapes(tiny["a"])
    evaluator = LVISEvaluator("lt_shapes_val", tasks=("bbox",), distributed=False)
    evaluator.reset()
    for r in DatasetCatalog.get("lt_shapes_val"):
        boxes = [
            BoxMode.convert(o["bbox"], o["bbox_mode"], BoxMode.XYXY_ABS) for o in r["annotations"]
        ]
        inst = Instances((r["height"], r["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.ones(len(boxes))
        inst.pred_classes = torch.tensor(
            [o["category_id"] for o in r["annotations"]], dtype=torch.int64
        )
        evaluator.process([{"image_id": r["image_id"]}], [{"instances": inst}])
    res = evaluator.evaluate()["bbox"]
    for key in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
        assert res[key] > 99.0, (key, res[key])


# ---------------------------------------------------------------- command line


def test_cli_module_and_wrapper(tiny, tmp_path, monkeypatch, capsys):
    # `python -m libra_d2.data.datasets.lt_shapes_generate ...`, run in-process (a fresh interpreter
    # would spend most of its time importing torch through the libra_d2 package).
    monkeypatch.setattr(sys, "argv", ["lt_shapes", "--root", tiny["a"], "--preset", "tiny"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules" from runpy
        with pytest.raises(SystemExit) as exc:
            runpy.run_module("libra_d2.data.datasets.lt_shapes_generate", run_name="__main__")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "skipped" in out
    for word in ("rare", "common", "frequent", "total"):
        assert word in out
    # the datasets/ script, as a real subprocess
    root = str(tmp_path / "cli")
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "datasets", "prepare_lt_shapes.py"),
            "--root",
            root,
            "--num-train",
            "150",
            "--num-val",
            "10",
            "--image-size",
            "48",
            "--seed",
            "3",
            "--quiet",
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "generated in" in out
    params = json.loads(_file_bytes(root, "params.json"))["params"]
    assert (params["num_train"], params["num_val"], params["image_size"], params["seed"]) == (
        150,
        10,
        48,
        3,
    )
    assert _load(root, "val")["images"][0]["width"] == 48


# ---------------------------------------------------------------- the dense variant


def test_dense_variant_layout_and_registration(tmp_path, d2_catalogs, monkeypatch):
    """The dense preset's layout (8-16 objects of 5%-25% of the side), recorded in params.json,
    registered as lt_shapes_dense_* under its own folder; at a smaller size to stay fast."""
    DatasetCatalog, MetadataCatalog = d2_catalogs
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = lts.default_root("dense")
    assert root == os.path.join(str(tmp_path), "lt_shapes_dense")
    ltg.generate_lt_shapes(
        root, preset="dense", num_train=150, num_val=24, image_size=96, verbose=False
    )
    params = json.load(open(os.path.join(root, "params.json")))["params"]
    assert (params["min_objects"], params["max_objects"]) == (8, 16)
    assert (params["min_rel_size"], params["max_rel_size"]) == (0.05, 0.25)
    train = _load(root, "train")
    per_image = defaultdict(list)
    for a in train["annotations"]:
        per_image[a["image_id"]].append(a)
    counts = [len(v) for v in per_image.values()]
    assert min(counts) >= 6 and max(counts) <= 16 and np.mean(counts) > 10  # few dropped
    # the extent before rotation is at most 25% of the side; rotated, at most sqrt(2) x that
    assert max(max(a["bbox"][2], a["bbox"][3]) for a in train["annotations"]) <= 0.25 * 96 * 1.5
    freqs = [c["frequency"] for c in train["categories"]]
    assert (freqs.count("f"), freqs.count("c"), freqs.count("r")) == (6, 12, 14)
    try:
        lts.register_lt_shapes(variant="lt_shapes_dense")
        meta = MetadataCatalog.get("lt_shapes_dense_train")
        assert meta.image_root == root and meta.category_frequency == freqs
        assert len(DatasetCatalog.get("lt_shapes_dense_val")) == 24
        with pytest.raises(ValueError, match="unknown LT-Shapes variant"):
            lts.register_lt_shapes(variant="lt_shapes_huge")
    finally:
        monkeypatch.undo()
        lts.register_lt_shapes(variant="lt_shapes_dense")  # back to the default location


def test_default_layout_is_not_recorded_so_old_datasets_are_reused(tiny):
    """The object-size options are written to params.json only when not the default: datasets
    made before the options existed keep matching and are reused."""
    params = json.load(open(os.path.join(tiny["a"], "params.json")))["params"]
    assert "min_rel_size" not in params and "max_rel_size" not in params
    assert ltg.generate_lt_shapes(tiny["a"], preset="tiny", verbose=False)["skipped"] is True


def test_dense_registration_without_data_uses_the_dense_plan(tmp_path, d2_catalogs):
    DatasetCatalog, MetadataCatalog = d2_catalogs
    try:
        lts.register_lt_shapes(str(tmp_path / "none"), variant="lt_shapes_dense")
        freqs = MetadataCatalog.get("lt_shapes_dense_train").category_frequency
        assert (freqs.count("f"), freqs.count("c"), freqs.count("r")) == (6, 12, 14)
        with pytest.raises(FileNotFoundError, match="--preset dense"):
            DatasetCatalog.get("lt_shapes_dense_train")
    finally:
        lts.register_lt_shapes(variant="lt_shapes_dense")


# ---------------------------------------------------------------- the large variant


def test_large_variant_has_lvis_relative_rarity_and_registers_without_planning(
    tmp_path, d2_catalogs, monkeypatch
):
    """The large preset keeps the rare categories at 2-10 train images in 20,000 (<= 0.05%,
    LVIS's relative rarity); a missing large dataset is registered without being planned (the
    registration runs at every import), and loading it names the command that generates it."""
    DatasetCatalog, MetadataCatalog = d2_catalogs
    large = ltp.PRESETS["large"]
    assert large["num_train"] > lts.PLAN_AT_REGISTRATION_MAX_IMAGES
    targets = ltp.target_train_image_counts(large["num_train"])
    rare = sorted(targets.values())[:12]
    assert max(rare) / large["num_train"] <= 0.0005 and min(rare) >= 2

    def no_plan(*args, **kwargs):
        raise AssertionError("registration planned the large variant")

    monkeypatch.setattr(lts, "plan_lt_shapes", no_plan)
    try:
        lts.register_lt_shapes(str(tmp_path / "none"), variant="lt_shapes_large")
        meta = MetadataCatalog.get("lt_shapes_large_train")
        assert meta.get("category_frequency", None) is None and len(meta.thing_classes) == 32
        with pytest.raises(FileNotFoundError, match="--preset large"):
            DatasetCatalog.get("lt_shapes_large_train")
    finally:
        monkeypatch.undo()
        lts.register_lt_shapes(variant="lt_shapes_large")
