"""Export a libra_d2 detector through Detectron2's export path: ``TracingAdapter`` flattens the
model's inputs and outputs, ``torch.jit.trace`` records it as TorchScript.

What exports (tested: the traced model gives the eager model's boxes, scores and classes on other
images than the one it was traced with, ``tests/test_export.py``): Libra Faster R-CNN with BFP and
its non-local refine, Libra RetinaNet, EFL RetinaNet and its improved baseline with the IoU-branch
scoring, and PRM (ParallelROIHeads, the averaged logits).

What does not:

* Detectron2 0.6: its ``detectron2.export`` imports caffe2, which current torch no longer has;
  :data:`libra_d2.utils.compat.HAS_TRACING_ADAPTER` is False there and :func:`trace_model`
  refuses with that reason. Export with Detectron2 main.
* ONNX: torch's TorchScript-based exporter (``torch.onnx.export(adapter, ..., dynamo=False)``,
  opset 17, onnx 1.23) stops at BFP's integration: ``adaptive_max_pool2d`` to the refine level's
  size, which is data-dependent in the traced graph ("output_size is not constant"). Measured on
  Libra RetinaNet; not supported yet.
* Training-time state (EFL's gradient statistics, LOCE's feature memory) is not part of an
  inference graph; the buffers are exported as constants.

Two-stage models are traced without post-processing (boxes in the resized input's coordinates,
as Detectron2's ``tools/deploy/export_model.py``); one-stage models through their ``forward``.
"""

from typing import Dict, List

import torch

from .utils.compat import HAS_TRACING_ADAPTER

__all__ = ["trace_model"]


def _rcnn_inference(model, inputs: List[Dict]):
    # do_postprocess=False: the boxes of the resized input (Detectron2's export convention)
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def trace_model(model: torch.nn.Module, image: torch.Tensor):
    """``(traced, adapter)``: ``model`` (in eval mode) traced on one ``(3, H, W)`` image.
    ``adapter.outputs_schema(traced(image))`` rebuilds Detectron2's outputs (a list with one
    ``{"instances": Instances}``)."""
    if not HAS_TRACING_ADAPTER:
        raise RuntimeError(
            "Detectron2's export path is unavailable here: detectron2.export needs caffe2 on "
            "Detectron2 0.6. Export with Detectron2 main."
        )
    from detectron2.export import TracingAdapter

    if model.training:
        raise ValueError("trace_model needs the model in eval mode (model.eval())")
    inference = _rcnn_inference if hasattr(model, "roi_heads") else None
    adapter = TracingAdapter(model, [{"image": image}], inference)
    with torch.no_grad():
        traced = torch.jit.trace(adapter, adapter.flattened_inputs)
    return traced, adapter
