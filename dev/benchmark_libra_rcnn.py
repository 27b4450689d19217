#!/usr/bin/env python
"""Libra R-CNN's cost, measured side by side in one run:

1. the sampler: libra_d2's IoU-balanced + instance-balanced subsampling vs Detectron2's
   ``subsample_labels`` (2,000 proposals, 512 samples; target <= 2x);
2. a training step (forward + backward + SGD step) and inference of the tiny LT-Shapes Faster
   R-CNN, plain vs with the Balanced Feature Pyramid (non-local refine) vs full Libra R-CNN
   (targets for BFP: <= 1.15x per training step, <= 1.10x at inference; the paper reports 1.05x).

Variants are interleaved round by round so that drifts of a shared machine hit them alike; the
reported number is the median. Writes the tables to --output (markdown) as well.

    python dev/benchmark_libra_rcnn.py [--rounds 5] [--steps 6] \\
        [--output docs/benchmarks/libra_rcnn.md]
"""

import argparse
import os
import statistics
import sys

import libra_d2  # noqa: F401  isort: skip (first: registers components)
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.modeling.sampling import subsample_labels
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from libra_d2.data import CheckedDatasetMapper
from libra_d2.modeling.sampling import libra_subsample_labels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_utils import (  # noqa: E402
    add_device_argument,
    device_sync,
    machine_line,
    timed,
    write_report,
)
from benchmark_sampler import make_image  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
VARIANTS = {
    "Faster R-CNN (plain)": (BASE, []),
    "+ BFP (non-local)": (BASE, ["MODEL.BACKBONE.NAME", "build_resnet_bfp_backbone"]),
    "Libra R-CNN (all)": ("configs/LT-Shapes/libra_faster_rcnn_R_18_FPN_tiny.yaml", []),
}


def bench_sampler(rounds, repeats):
    labels, max_ious, matches, bg = make_image()
    methods = {
        "Detectron2 subsample_labels": lambda: subsample_labels(labels, 512, 0.25, bg),
        "IoU-balanced neg + instance-balanced pos": lambda: libra_subsample_labels(
            labels,
            512,
            0.25,
            bg,
            max_ious=max_ious,
            matched_idxs=matches,
            pos_sampling="instance",
            neg_sampling="iou_balanced",
        ),
    }
    times = {k: [] for k in methods}
    for f in methods.values():
        for _ in range(50):
            f()
    for _ in range(rounds):
        for name, f in methods.items():
            times[name] += [timed(f) for _ in range(repeats)]
    base = statistics.median(times["Detectron2 subsample_labels"])
    return [(k, statistics.median(v) * 1e3, statistics.median(v) / base) for k, v in times.items()]


def build(config, opts, device="cpu"):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, config))
    # fixed inference workload: keep every detection (no score threshold) of the 300 proposals
    cfg.merge_from_list(opts + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", device])
    torch.manual_seed(0)
    model = build_model(cfg)
    return cfg, model, build_optimizer(cfg, model)


def bench_models(rounds, steps, device="cpu"):
    sync = device_sync(device)
    cfg0, _, _ = build(BASE, [], device)
    mapper = CheckedDatasetMapper(cfg0, is_train=True)
    records = DatasetCatalog.get(cfg0.DATASETS.TRAIN[0])[: cfg0.SOLVER.IMS_PER_BATCH]
    batch = [mapper(dict(r)) for r in records]
    test_batch = [{"image": d["image"], "height": 128, "width": 128} for d in batch]
    built = {name: build(cfg, opts, device) for name, (cfg, opts) in VARIANTS.items()}

    def train_step(model, opt):
        model.train()
        with EventStorage():
            loss = sum(model(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer(model):
        model.eval()
        with torch.no_grad():
            model(test_batch)

    for _, model, opt in built.values():  # warm-up
        train_step(model, opt)
        infer(model)
    train_t = {k: [] for k in built}
    infer_t = {k: [] for k in built}
    for _ in range(rounds):
        for name, (_, model, opt) in built.items():
            train_t[name] += [timed(lambda: train_step(model, opt), sync) for _ in range(steps)]
            infer_t[name] += [timed(lambda: infer(model), sync) for _ in range(steps)]
    base = "Faster R-CNN (plain)"
    rows = []
    for name in built:
        tr, inf = statistics.median(train_t[name]), statistics.median(infer_t[name])
        rows.append(
            (
                name,
                tr * 1e3,
                tr / statistics.median(train_t[base]),
                inf * 1e3,
                inf / statistics.median(infer_t[base]),
            )
        )
    return rows, cfg0.SOLVER.IMS_PER_BATCH


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant per round")
    ap.add_argument("--sampler-repeats", type=int, default=300)
    ap.add_argument("--output", default="docs/benchmarks/libra_rcnn.md")
    add_device_argument(ap)
    args = ap.parse_args()

    lines = [machine_line(args.device), ""]
    lines += [
        "Sampler (2,000 proposals incl. 20 GT, 512 samples, positive fraction 0.25; target <= 2x):",
        "",
        "| method | median ms | ratio |",
        "|---|---|---|",
    ]
    for name, ms, ratio in bench_sampler(args.rounds, args.sampler_repeats):
        lines.append("| {} | {:.3f} | {:.2f}x |".format(name, ms, ratio))
    rows, batch = bench_models(args.rounds, args.steps, args.device)
    lines += [
        "",
        "Tiny LT-Shapes detector, batch of {} 128 px images (targets for BFP: <= 1.15x train, "
        "<= 1.10x inference):".format(batch),
        "",
        "| model | train step ms | ratio | inference ms | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, tr, trr, inf, infr in rows:
        lines.append(
            "| {} | {:.0f} | {:.2f}x | {:.0f} | {:.2f}x |".format(name, tr, trr, inf, infr)
        )
    write_report(
        "\n".join(lines), args.output, "Libra R-CNN benchmark (dev/benchmark_libra_rcnn.py)"
    )


if __name__ == "__main__":
    main()
