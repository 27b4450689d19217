#!/usr/bin/env python
"""The paper's Fig. 3 on LT-Shapes: IoU histogram of the negatives that random sampling and
IoU-balanced sampling pick from the proposals of a trained model.

    python dev/plot_iou_histogram.py \\
        --config-file configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml \\
        --weights output/demo/model_final.pth --output docs/iou_histogram.png [--num-images 200]

The model's RPN proposes boxes for training images (training-time top-k, ground truth appended as
Detectron2's ROI heads do); the R-CNN sampler is then run on the same proposals once with random
and once with IoU-balanced negatives (same seed). Prints the share of sampled negatives with IoU
above 0.05 for both.
"""

import argparse

import libra_d2  # noqa: F401  isort: skip (first: registers components)
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.modeling.proposal_generator.proposal_utils import (  # noqa: E402
    add_ground_truth_to_proposals,
)
from detectron2.structures import pairwise_iou  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from libra_d2.data import CheckedDatasetMapper  # noqa: E402
from libra_d2.engine import setup_cfg  # noqa: E402
from libra_d2.modeling.sampling import libra_subsample_labels  # noqa: E402

HARD = 0.05


def sampled_negative_ious(cfg, model, num_images, neg_sampling, iou_upper, seed=0):
    mapper = CheckedDatasetMapper(cfg, is_train=True)
    records = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[:num_images]
    roi = cfg.MODEL.ROI_HEADS
    gen = torch.Generator().manual_seed(seed)
    out = []
    model.train()
    for record in records:
        data = [mapper(dict(record))]
        with torch.no_grad(), EventStorage():
            images = model.preprocess_image(data)
            targets = [d["instances"] for d in data]
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, targets)
        proposals = add_ground_truth_to_proposals(targets, proposals)[0]
        iou = pairwise_iou(targets[0].gt_boxes, proposals.proposal_boxes)
        max_ious = iou.max(dim=0).values
        matched = iou.argmax(dim=0)
        labels = torch.where(
            max_ious >= roi.IOU_THRESHOLDS[0],
            targets[0].gt_classes[matched],
            torch.full_like(matched, roi.NUM_CLASSES),
        )
        _, neg = libra_subsample_labels(
            labels,
            roi.BATCH_SIZE_PER_IMAGE,
            roi.POSITIVE_FRACTION,
            roi.NUM_CLASSES,
            max_ious=max_ious,
            matched_idxs=matched,
            neg_sampling=neg_sampling,
            iou_upper=iou_upper,
            generator=gen,
        )
        out.append(max_ious[neg])
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--output", default="docs/iou_histogram.png")
    ap.add_argument("--num-images", type=int, default=200)
    ap.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = ap.parse_args()
    cfg = setup_cfg(
        argparse.Namespace(config_file=args.config_file, opts=args.opts), do_default_setup=False
    )
    model = build_model(cfg)
    DetectionCheckpointer(model).load(args.weights)

    runs = {
        "random": sampled_negative_ious(cfg, model, args.num_images, "random", None),
        "IoU-balanced (reference bins)": sampled_negative_ious(
            cfg, model, args.num_images, "iou_balanced", None
        ),
        "IoU-balanced (bins up to 0.5)": sampled_negative_ious(
            cfg, model, args.num_images, "iou_balanced", 0.5
        ),
    }
    bins = np.linspace(0, 0.5, 26)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ious in runs.items():
        share = float((ious > HARD).mean())
        print(
            "{:32s} negatives {:6d}  share with IoU > {}: {:.3f}".format(
                name, len(ious), HARD, share
            )
        )
        ax.hist(
            ious,
            bins=bins,
            histtype="step",
            linewidth=2,
            label="{} ({:.0%} above {})".format(name, share, HARD),
        )
    ax.set_yscale("log")
    ax.set_xlabel("IoU of sampled negative with its closest ground truth")
    ax.set_ylabel("number of sampled negatives")
    ax.set_title("Sampled negatives on LT-Shapes ({} training images)".format(args.num_images))
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print("saved", args.output)


if __name__ == "__main__":
    main()
