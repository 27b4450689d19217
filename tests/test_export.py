"""libra_d2.export: each exported detector (TorchScript through Detectron2's TracingAdapter) gives
the eager model's boxes, scores and classes on LT-Shapes images it was not traced with, also after
saving and loading; on Detectron2 0.6 the export refuses with its reason."""

import glob
import os

import pytest
import torch
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from tiny_models import cfg_from

from libra_d2.export import trace_model
from libra_d2.utils.compat import HAS_TRACING_ADAPTER

DETECTORS = {
    "libra_faster_rcnn_bfp_non_local": "configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml",
    "libra_retinanet": "configs/LT-Shapes/libra_retinanet_R_18_FPN_tiny.yaml",
    "efl_retinanet_iou_branch": "configs/LT-Shapes/efl_improved_baseline_R_18_FPN_tiny.yaml",
    "prm": "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml",
}
KEEP_ALL = {
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0,
    "MODEL.RETINANET.SCORE_THRESH_TEST": 0.0,
    "MODEL.WEIGHTS": "",
}


def _images(root, n=3):
    paths = sorted(glob.glob(os.path.join(root, "lt_shapes", "val", "*.png")))[:n]
    assert len(paths) == n
    return [torch.as_tensor(read_image(p, format="BGR").transpose(2, 0, 1).copy()) for p in paths]


def _model(config):
    torch.manual_seed(0)
    model = build_model(cfg_from(config, **KEEP_ALL)).eval()
    # An untrained classifier scores every anchor at its prior: ties, whose order is arbitrary.
    # Random classifier weights make the scores distinct, so the detections can be compared.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "cls_score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def _eager(model, image):
    with torch.no_grad():
        if hasattr(model, "roi_heads"):
            return model.inference([{"image": image}], do_postprocess=False)[0]
        return model([{"image": image}])[0]["instances"]


def _assert_same(a, b):
    """The same detections (class, score within 1e-5, box within 1e-3 px), one to one. Order may
    differ between scores equal to fp32 rounding, and so may membership at the top-k cut."""
    assert len(a) == len(b) > 10
    cut = float(a.scores.min()) + 1e-5
    free = list(range(len(b)))
    for i in range(len(a)):
        match = [
            j
            for j in free
            if b.pred_classes[j] == a.pred_classes[i]
            and abs(float(b.scores[j] - a.scores[i])) < 1e-5
            and float((b.pred_boxes.tensor[j] - a.pred_boxes.tensor[i]).abs().max()) < 1e-3
        ]
        if match:
            free.remove(match[0])
        else:
            assert float(a.scores[i]) <= cut, ("no traced detection matches", i)
    assert len(free) <= sum(1 for s in b.scores.tolist() if s <= cut)


@pytest.mark.skipif(
    not HAS_TRACING_ADAPTER, reason="Detectron2 0.6's detectron2.export needs caffe2"
)
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_torchscript_round_trip(name, lt_shapes_tiny, tmp_path):
    model = _model(DETECTORS[name])
    images = _images(lt_shapes_tiny)
    traced, adapter = trace_model(model, images[0])
    path = str(tmp_path / "model.ts")
    torch.jit.save(traced, path)
    loaded = torch.jit.load(path)
    for image in images[1:]:  # other images than the traced one: other sizes of every tensor
        expected = _eager(model, image)
        for ts in (traced, loaded):
            with torch.no_grad():
                got = adapter.outputs_schema(ts(image))[0]["instances"]
            _assert_same(expected, got)


@pytest.mark.skipif(HAS_TRACING_ADAPTER, reason="Detectron2's export path is available here")
def test_export_refuses_clearly_without_tracing_adapter(lt_shapes_tiny):
    model = _model(DETECTORS["libra_retinanet"])
    with pytest.raises(RuntimeError, match="caffe2"):
        trace_model(model, _images(lt_shapes_tiny, 1)[0])


def test_export_needs_eval_mode(lt_shapes_tiny):
    if not HAS_TRACING_ADAPTER:
        pytest.skip("Detectron2 0.6's detectron2.export needs caffe2")
    model = _model(DETECTORS["libra_retinanet"]).train()
    with pytest.raises(ValueError, match="eval mode"):
        trace_model(model, _images(lt_shapes_tiny, 1)[0])
