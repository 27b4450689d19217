"""Class frequencies of the training sets: images per class and LVIS's frequency groups."""

from detectron2.data import DatasetCatalog, MetadataCatalog

from libra_d2.data.class_frequency import training_class_image_counts, training_frequency_groups
from libra_d2.data.frequency_groups import frequency_group_of


def test_training_frequency_groups_from_metadata():
    assert [frequency_group_of(n) for n in (0, 1, 10, 11, 100, 101)] == [
        "r",
        "r",
        "r",
        "c",
        "c",
        "f",
    ]
    name = "_efl_test_counts"
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    counts = [1, 10, 11, 100, 101]
    MetadataCatalog.get(name).set(
        class_image_count=[{"id": i + 1, "image_count": c} for i, c in enumerate(counts)]
    )
    assert training_frequency_groups([name], 5) == ["r", "r", "c", "c", "f"]
    assert training_frequency_groups(["_efl_test_nothing"], 5) is None
    lvis = training_frequency_groups(["lvis_v1_train"], 1203)  # Detectron2's LVIS class list
    assert lvis is not None and [lvis.count(g) for g in "rcf"] == [337, 461, 405]


def test_training_class_image_counts_from_metadata_or_counted():
    name = "_class_frequency_test_dicts"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    records = [
        {"annotations": [{"category_id": 0}, {"category_id": 0}, {"category_id": 2}]},
        {"annotations": [{"category_id": 2}]},
        {"annotations": []},
    ]
    DatasetCatalog.register(name, lambda: records)
    assert training_class_image_counts([name], 3).tolist() == [1.0, 0.0, 2.0]  # images, not boxes
    meta = "_class_frequency_test_meta"  # class_image_count metadata: no counting needed
    if meta in MetadataCatalog.list():
        MetadataCatalog.remove(meta)
    MetadataCatalog.get(meta).set(
        class_image_count=[
            {"id": i + 1, "image_count": c} for i, c in enumerate([1, 10, 11, 100, 101])
        ]
    )
    assert training_class_image_counts([meta], 5).tolist() == [1.0, 10.0, 11.0, 100.0, 101.0]
