"""Pre-train the tiny family's ResNet once, as the local stand-in for ImageNet weights.

    python -m libra_d2.engine.backbone_pretraining [--config-file configs/LT-Shapes/Base-Tiny.yaml]
        [--output PATH] [--iters N] [--overwrite]

The task is a *sister* task of LT-Shapes, as ImageNet is of COCO: crops of one shape of the 8
LT-Shapes families, in a colour drawn uniformly over the whole hue circle (not LT-Shapes' 16
colours), on LT-Shapes' background. Two linear heads on the pooled ``res5`` features classify
the shape family and the hue (12 bins of 30 degrees). So the backbone learns shape and colour,
but nothing about which (shape, colour) pairs are LT-Shapes' categories or how frequent they
are: the detector still learns its classes, and their imbalance, from the long-tailed data.

The ResNet is built from the config the detector uses (``build_resnet_backbone``, with BatchNorm
that trains), so the checkpoint fits the tiny configs exactly. It is saved, in one rename, as a
Detectron2 checkpoint whose keys are the detector's ``backbone.bottom_up.*``, without the heads
and without ``num_batches_tracked``, so that ``MODEL.WEIGHTS`` loads it into a ResNet with BN or
FrozenBN. It is cached: an existing file is kept unless ``--overwrite``. The accuracy on held-out
crops is logged and saved with it.
"""

import argparse
import colorsys
import json
import logging
import math
import os
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from detectron2.utils.logger import setup_logger
from torch import nn
from torch.nn import functional as F

from ..checkpoint.pretrained import TINY_BACKBONE_WEIGHTS, resolve_weights
from ..config import add_libra_config
from ..data.datasets.lt_shapes_categories import LT_SHAPES_SHAPES
from ..data.datasets.lt_shapes_render import render_shape_crop

__all__ = ["ShapeHueClassifier", "make_crops", "pretrain_backbone", "main"]

# named, not __name__: run with -m the module is __main__, outside the "libra_d2" logger
logger = logging.getLogger("libra_d2.engine.backbone_pretraining")

HUE_BINS = 12
DEFAULTS = dict(num_train=24000, num_val=2000, crop_size=64, iters=1500, batch_size=128, lr=0.1)


def make_crops(num: int, crop_size: int, seed: int):
    """``num`` crops (N, S, S, 3 BGR uint8) with their shape-family and hue-bin labels."""
    rng = np.random.default_rng(seed)
    images = np.empty((num, crop_size, crop_size, 3), dtype=np.uint8)
    shapes = rng.integers(0, len(LT_SHAPES_SHAPES), size=num)
    hues = rng.uniform(0.0, 1.0, size=num)
    for k in range(num):
        rgb = colorsys.hsv_to_rgb(hues[k], rng.uniform(0.45, 1.0), rng.uniform(0.45, 0.95))
        images[k] = render_shape_crop(
            LT_SHAPES_SHAPES[shapes[k]], [255.0 * c for c in rgb], crop_size, rng
        )
    hue_bins = np.minimum((hues * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    return images, shapes.astype(np.int64), hue_bins


class ShapeHueClassifier(nn.Module):
    """A Detectron2 ResNet (``res5`` out) with two linear heads: shape family and hue bin."""

    def __init__(self, cfg):
        super().__init__()
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
        cfg.MODEL.RESNETS.NORM = "BN"
        cfg.MODEL.BACKBONE.FREEZE_AT = 0
        self.bottom_up = build_resnet_backbone(cfg, ShapeSpec(channels=3))
        channels = self.bottom_up.output_shape()["res5"].channels
        self.shape_head = nn.Linear(channels, len(LT_SHAPES_SHAPES))
        self.hue_head = nn.Linear(channels, HUE_BINS)
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1))

    def forward(self, images_uint8: torch.Tensor):
        x = (images_uint8.permute(0, 3, 1, 2).float() - self.pixel_mean) / self.pixel_std
        pooled = self.bottom_up(x)["res5"].mean(dim=(2, 3))
        return self.shape_head(pooled), self.hue_head(pooled)


def _accuracy(model, images, shapes, hues, batch_size=500):
    model.eval()
    right_shape = right_hue = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            s, h = model(torch.from_numpy(images[i : i + batch_size]))
            right_shape += int((s.argmax(1).numpy() == shapes[i : i + batch_size]).sum())
            right_hue += int((h.argmax(1).numpy() == hues[i : i + batch_size]).sum())
    model.train()
    return right_shape / len(images), right_hue / len(images)


def _detector_state_dict(model: ShapeHueClassifier):
    return {
        "backbone.bottom_up." + k: v.detach().clone()
        for k, v in model.bottom_up.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def pretrain_backbone(cfg, output: str, seed: int = 0, log_period: int = 50, **options):
    """Train the classifier and save its ResNet as a Detectron2 checkpoint at ``output``.
    Returns the held-out accuracies and the settings."""
    opts = dict(DEFAULTS, **options)
    torch.manual_seed(seed)
    t0 = time.time()
    train = make_crops(opts["num_train"], opts["crop_size"], seed)
    val = make_crops(opts["num_val"], opts["crop_size"], seed + 1_000_003)
    logger.info(
        "Made %d train / %d held-out crops of %d px in %.0f s",
        opts["num_train"],
        opts["num_val"],
        opts["crop_size"],
        time.time() - t0,
    )
    model = ShapeHueClassifier(cfg)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=opts["lr"], momentum=0.9, weight_decay=1e-4, nesterov=True
    )
    warmup, iters = min(100, opts["iters"] // 10), opts["iters"]

    def lr_at(it):  # linear warm-up, then cosine to zero
        if it < warmup:
            return opts["lr"] * (it + 1) / warmup
        return opts["lr"] * 0.5 * (1 + math.cos(math.pi * (it - warmup) / max(1, iters - warmup)))

    rng = np.random.default_rng(seed + 7)
    t_start = time.time()
    for it in range(iters):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        idx = rng.integers(0, len(train[0]), size=opts["batch_size"])
        batch = train[0][idx]
        if rng.random() < 0.5:  # flips keep shape and hue
            batch = batch[:, :, ::-1]
        shape_logits, hue_logits = model(torch.from_numpy(np.ascontiguousarray(batch)))
        loss = F.cross_entropy(shape_logits, torch.from_numpy(train[1][idx])) + F.cross_entropy(
            hue_logits, torch.from_numpy(train[2][idx])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError("pre-training diverged at iteration {}".format(it))
        if (it + 1) % log_period == 0 or it + 1 == iters:
            per_iter = (time.time() - t_start) / (it + 1)
            logger.info(
                "iter %d/%d  loss %.3f  lr %.4f  %.2f s/iter  eta %.0f s",
                it + 1,
                iters,
                loss.item(),
                lr_at(it),
                per_iter,
                per_iter * (iters - it - 1),
            )
    shape_acc, hue_acc = _accuracy(model, *val)
    info = {
        "task": "shape family (8) + hue bin (12) of LT-Shapes-style crops",
        "held_out_shape_accuracy": round(shape_acc, 4),
        "held_out_hue_accuracy": round(hue_acc, 4),
        "seed": seed,
        "seconds": round(time.time() - t0, 1),
        **opts,
    }
    logger.info("Held-out accuracy: shape %.3f, hue %.3f", shape_acc, hue_acc)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    torch.save(
        {
            "model": _detector_state_dict(model),
            "__author__": "libra_d2.engine.backbone_pretraining",
            "pretraining": info,
        },
        tmp,
    )
    os.replace(tmp, output)
    with open(os.path.splitext(output)[0] + ".json", "w") as f:
        json.dump(info, f, indent=1)
    logger.info("Saved %s", output)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", default="configs/LT-Shapes/Base-Tiny.yaml")
    parser.add_argument("--output", default=None, help="default: " + TINY_BACKBONE_WEIGHTS)
    parser.add_argument("--iters", type=int, default=DEFAULTS["iters"])
    parser.add_argument("--num-train", type=int, default=DEFAULTS["num_train"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    setup_logger(name="libra_d2")
    output = args.output or resolve_weights(TINY_BACKBONE_WEIGHTS)
    if os.path.isfile(output) and not args.overwrite:
        logger.info("%s exists; kept (pass --overwrite to rebuild it)", output)
        return output
    if not os.path.isfile(args.config_file):
        raise SystemExit("config file not found: {}".format(args.config_file))
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.merge_from_file(args.config_file)
    pretrain_backbone(cfg, output, seed=args.seed, iters=args.iters, num_train=args.num_train)
    return output


if __name__ == "__main__":
    main()
