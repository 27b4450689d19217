"""Detectron2's compiled ops: used and correct where Detectron2 was built with them (official main),
refused with the stand-in's clear missing-op error where it was not (the 0.6 source release).

Every test runs on both environments: each branch asserts what that environment must do, so none
is skipped for lack of compiled ops. Only the CUDA kernels need a GPU (``dev/gpu_check.sh``).
"""

import copy
import json
import os

import pytest
import torch

from libra_d2.utils.compat import HAS_COMPILED_OPS, HAS_FAST_COCOEVAL

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run by dev/gpu_check.sh)"
)


def _missing(op):
    """The stand-in's error for ``op`` (0.6): an AttributeError naming it and the compiled ops."""
    return pytest.raises(AttributeError, match="{}.*compiled".format(op))


def test_environment_reports_its_compiled_ops():
    from detectron2 import _C

    assert HAS_COMPILED_OPS is (not getattr(_C, "IS_STANDIN", False))
    assert HAS_FAST_COCOEVAL is HAS_COMPILED_OPS


def test_rotated_box_iou_and_nms():
    from detectron2.layers import nms_rotated
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    # (cx, cy, w, h, angle): a box, itself turned 90 degrees (the same square), a far box
    boxes = torch.tensor(
        [[10.0, 10.0, 4.0, 4.0, 0.0], [10.0, 10.0, 4.0, 4.0, 90.0], [50.0, 50.0, 4.0, 2.0, 30.0]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7])
    if not HAS_COMPILED_OPS:
        with _missing("box_iou_rotated"):
            pairwise_iou_rotated(RotatedBoxes(boxes), RotatedBoxes(boxes))
        with _missing("nms_rotated"):
            nms_rotated(boxes, scores, 0.5)
        return
    iou = pairwise_iou_rotated(RotatedBoxes(boxes), RotatedBoxes(boxes))
    torch.testing.assert_close(iou.diagonal(), torch.ones(3))
    assert iou[0, 1] == pytest.approx(1.0, abs=1e-5) and iou[0, 2] == 0
    assert nms_rotated(boxes, scores, 0.5).tolist() == [0, 2]


def test_roi_align_rotated_at_zero_angle_equals_roi_align():
    from detectron2.layers import ROIAlign, ROIAlignRotated

    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    rois = torch.tensor([[0.0, 3.0, 4.0, 11.0, 12.0]])  # batch index, x0, y0, x1, y1
    rotated = torch.tensor([[0.0, 7.0, 8.0, 8.0, 8.0, 0.0]])  # batch index, cx, cy, w, h, angle
    align = ROIAlignRotated((4, 4), spatial_scale=1.0, sampling_ratio=2)
    if not HAS_COMPILED_OPS:
        with _missing("roi_align_rotated_forward"):
            align(x, rotated)
        return
    expected = ROIAlign((4, 4), spatial_scale=1.0, sampling_ratio=2, aligned=True)(x, rois)
    torch.testing.assert_close(align(x, rotated), expected, rtol=1e-5, atol=1e-5)


def test_deformable_conv_forward_on_cpu_and_its_backward_needs_cuda():
    """On the CPU Detectron2 runs deformable convolution's forward through torchvision (both
    installs) and has no backward; training with it needs the CUDA kernels (GPU check)."""
    from detectron2.layers import DeformConv

    torch.manual_seed(0)
    conv = DeformConv(2, 3, kernel_size=3, padding=1)
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    offset = torch.zeros(1, 18, 6, 6)
    y = conv(x, offset)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, conv.weight, padding=1))
    with pytest.raises(NotImplementedError, match="not supported on CPUs"):
        y.sum().backward()


@needs_cuda
@pytest.mark.cuda
def test_deformable_conv_trains_on_cuda():
    from detectron2.layers import DeformConv

    torch.manual_seed(0)
    conv = DeformConv(2, 3, kernel_size=3, padding=1).cuda()
    x = torch.randn(2, 2, 6, 6, device="cuda", requires_grad=True)
    offset = torch.zeros(2, 18, 6, 6, device="cuda")
    if not HAS_COMPILED_OPS:
        with _missing("deform_conv_forward"):
            conv(x, offset)
        return
    y = conv(x, offset)
    torch.testing.assert_close(
        y, torch.nn.functional.conv2d(x, conv.weight, padding=1), rtol=1e-4, atol=1e-4
    )
    y.sum().backward()
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0


def _coco_evaluator(lt_shapes_tiny, tmp_path, fast):
    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import COCOEvaluator

    with open(os.path.join(lt_shapes_tiny, "lt_shapes", "lt_shapes_val.json")) as f:
        data = json.load(f)
    for a in data["annotations"]:  # LVIS format -> COCO format: COCO's crowd flag
        a.setdefault("iscrowd", 0)
    json_file = str(tmp_path / "lt_shapes_val_coco.json")
    with open(json_file, "w") as f:
        json.dump(data, f)
    name = "lt_shapes_val_coco_{}".format("fast" if fast else "official")
    cat_ids = sorted(c["id"] for c in data["categories"])
    MetadataCatalog.get(name).set(
        json_file=json_file,
        evaluator_type="coco",
        thing_classes=[str(i) for i in cat_ids],
        thing_dataset_id_to_contiguous_id={c: i for i, c in enumerate(cat_ids)},
    )
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path / name), use_fast_impl=fast)
    return evaluator, data, {c: i for i, c in enumerate(cat_ids)}


def _predictions_from_ground_truth(data, contiguous, num_images=6):
    """Per image: its GT boxes (slightly shifted, decreasing scores) plus one false positive."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    pairs = []
    for img in data["images"][:num_images]:
        anns = by_image.get(img["id"], [])
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            + [[0.0, 0.0, 8.0, 8.0]]
        )
        boxes = boxes + torch.rand(boxes.shape, generator=g)
        inst = Instances((img["height"], img["width"]))
        inst.pred_boxes = Boxes(boxes)
        inst.scores = torch.linspace(0.9, 0.1, len(boxes))
        inst.pred_classes = torch.tensor([contiguous[a["category_id"]] for a in anns] + [0])
        pairs.append(({"image_id": img["id"]}, {"instances": inst}))
    return pairs


def test_fast_cocoeval_matches_official_cocoeval(lt_shapes_tiny, tmp_path):
    official, data, contiguous = _coco_evaluator(lt_shapes_tiny, tmp_path, fast=False)
    fast, _, _ = _coco_evaluator(lt_shapes_tiny, tmp_path, fast=True)
    pairs = _predictions_from_ground_truth(data, contiguous)
    for ev in (official, fast):
        ev.reset()
        for inputs, outputs in pairs:
            ev.process([inputs], [copy.deepcopy(outputs)])
    img_ids = [inputs["image_id"] for inputs, _ in pairs]
    expected = official.evaluate(img_ids=img_ids)["bbox"]
    assert 50 < expected["AP"] <= 100  # shifted GT boxes: high but not perfect
    if not HAS_FAST_COCOEVAL:
        with _missing("InstanceAnnotation"):  # the fast COCOeval's first op
            fast.evaluate(img_ids=img_ids)
        return
    got = fast.evaluate(img_ids=img_ids)["bbox"]
    assert got.keys() == expected.keys()
    for k in expected:  # Detectron2's C++ COCOeval reproduces the official numbers
        assert got[k] == pytest.approx(expected[k], abs=1e-6, nan_ok=True), k
