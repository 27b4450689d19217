#!/usr/bin/env python
"""Draw a trained model's detections next to the ground truth on a few validation images.

    python dev/visualize_detections.py --config-file CFG.yaml --weights out/model_final.pth \
        --output out/detections.png [--num-images 6] [--score-thresh 0.3] [opts ...]
"""

import argparse
import os

import cv2
import numpy as np
import torch

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import Visualizer

from libra_d2.engine import setup_cfg


def render(cfg, weights, output, num_images=6, score_thresh=0.3, scale=3.0):
    predictor = DefaultPredictor(cfg)
    DetectionCheckpointer(predictor.model).load(weights)
    dataset = cfg.DATASETS.TEST[0]
    meta = MetadataCatalog.get(dataset)
    records = DatasetCatalog.get(dataset)
    step = max(1, len(records) // num_images)
    rows = []
    for record in records[::step][:num_images]:
        image = read_image(record["file_name"], format="BGR")
        with torch.no_grad():
            instances = predictor(image)["instances"].to("cpu")
        instances = instances[instances.scores >= score_thresh]
        rgb = image[:, :, ::-1]
        # Boxes and labels only on both sides (mask overlays would tint the ground-truth side).
        boxes_only = dict(
            record,
            annotations=[
                {k: v for k, v in a.items() if k != "segmentation"} for a in record["annotations"]
            ],
        )
        gt = Visualizer(rgb, meta, scale=scale).draw_dataset_dict(boxes_only).get_image()
        pred = Visualizer(rgb, meta, scale=scale).draw_instance_predictions(instances).get_image()
        rows.append(np.concatenate([gt, pred], axis=1))
    grid = np.concatenate(rows, axis=0)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    cv2.imwrite(output, grid[:, :, ::-1])
    return output


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--score-thresh", type=float, default=0.3)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    cfg = setup_cfg(
        argparse.Namespace(config_file=args.config_file, opts=args.opts), do_default_setup=False
    )
    path = render(cfg, args.weights, args.output, args.num_images, args.score_thresh)
    print(
        "left: ground truth, right: detections (score >= {}) -> {}".format(args.score_thresh, path)
    )


if __name__ == "__main__":
    main()
