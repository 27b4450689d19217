"""Tiny configs and hand-made inputs shared by the model tests (64 px, LT-Shapes' 32 classes)."""

import os

import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

import libra_d2
from libra_d2.utils.events import flush_deferred_scalars

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_cfg(*opts):
    """``configs/LT-Shapes/Base-Tiny.yaml`` at 64 px, with ``opts`` merged."""
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/LT-Shapes/Base-Tiny.yaml"))
    cfg.merge_from_list(
        [
            "INPUT.MIN_SIZE_TRAIN",
            (64,),
            "INPUT.MAX_SIZE_TRAIN",
            64,
            "INPUT.MIN_SIZE_TEST",
            64,
            "INPUT.MAX_SIZE_TEST",
            64,
            *opts,
        ]
    )
    return cfg


def cfg_from(path, **overrides):
    """The config file ``path`` (relative to the repository) with dotted-key ``overrides``."""
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, path))
    for k, v in overrides.items():
        node = cfg
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return cfg


def random_batched_inputs(num_images=2, with_masks=False, seed=0):
    """``num_images`` 64 px images with 4 random boxes of random classes (and box-shaped masks)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_images):
        n = 4
        xy = torch.rand(n, 2, generator=g) * 40
        wh = 8 + torch.rand(n, 2, generator=g) * 16
        boxes = torch.cat([xy, (xy + wh).clamp(max=63)], dim=1)
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, 32, (n,), generator=g)
        if with_masks:
            inst.gt_masks = PolygonMasks(
                [[[b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]]] for b in boxes.tolist()]
            )
        image = (torch.rand(3, 64, 64, generator=g) * 255).to(torch.uint8)
        out.append({"image": image, "instances": inst, "height": 64, "width": 64})
    return out


def fixed_batched_inputs(size=64, seed=0):
    """Two images with fixed boxes (two and one) and random pixels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for boxes, classes in (
        ([[4, 6, 30, 40], [20, 10, 60, 50]], [1, 5]),
        ([[10, 12, 50, 44]], [31]),
    ):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        out.append({"image": torch.rand(3, size, size, generator=g) * 255, "instances": inst})
    return out


def dense_case(num_classes, seed=0, R=60):
    """Direct inputs of a dense detector's ``losses`` (RetinaNet's argument order): one level of R
    anchors, N = 2 images."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(R, 2, generator=g) * 40
    anchors = [Boxes(torch.cat([xy, xy + 8 + torch.rand(R, 2, generator=g) * 20], 1))]
    gt_labels = [torch.randint(-1, num_classes + 1, (R,), generator=g) for _ in range(2)]
    gt_boxes = [anchors[0].tensor + torch.randn(R, 4, generator=g) * 3 for _ in range(2)]
    pred_logits = [torch.randn(2, R, num_classes, generator=g)]
    pred_deltas = [torch.randn(2, R, 4, generator=g) * 0.2]
    return anchors, pred_logits, gt_labels, pred_deltas, gt_boxes


def train_losses(model, inputs, it=0):
    """One training forward of ``model`` at iteration ``it`` (seed 0): its losses and the scalars
    it logged (deferred ones included)."""
    torch.manual_seed(0)
    with EventStorage(it) as storage:
        losses = model(inputs)
        flush_deferred_scalars(storage)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    return losses, scalars


def losses_and_storage(model, inputs, seed=123):
    """One training forward of ``model`` (in train mode, seed ``seed``): its losses and the
    EventStorage it logged into (deferred scalars flushed)."""
    model.train()
    torch.manual_seed(seed)
    with EventStorage() as storage:
        losses = model(inputs)
        flush_deferred_scalars(storage)
    return losses, storage


def predict_instances(model, inputs):
    """The eval-mode detections of ``model`` on ``inputs`` (their images, at 64 px output)."""
    model.eval()
    inputs = [{"image": d["image"], "height": 64, "width": 64} for d in inputs]
    with torch.no_grad():
        return [o["instances"] for o in model(inputs)]
