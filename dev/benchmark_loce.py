#!/usr/bin/env python
"""Cost of LOCE's Memory-augmented Feature Sampling, measured side by side in one run on the tiny
LT-Shapes stage-2 fine-tune (Mask R-CNN R-18-FPN, backbone + box FCs frozen, EBL, batch of 8 128 px
images):

1. a training step (memory-batch sampling + forward + backward + SGD step) without MFS and with
   MFS (k 8 classes x m 4 rows from a pre-filled memory, 16 jittered boxes per GT pushed each step);
2. the MFS pieces alone: drawing the memory batch (class sampler + row gather) and pooling + pushing
   the jittered GT boxes of the batch;
3. the feature-memory footprint for LVIS v1 (1203 classes, M 80, 256x7x7) in fp32 and fp16
   (``FeatureMemory.estimate_nbytes``).

Variants are interleaved round by round so that drifts of a shared machine hit them alike; the
reported number is the median. Writes the tables to --output (markdown) as well.

    python dev/benchmark_loce.py [--rounds 5] [--steps 4] [--output docs/benchmarks/loce.md]
"""

import argparse
import os
import statistics
import time

import libra_d2  # noqa: F401  isort: skip (first: registers components)
import torch
from bench_utils import (  # noqa: E402
    add_device_argument,
    device_sync,
    machine_line,
    timed,
    write_report,
)
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from libra_d2.data import CheckedDatasetMapper
from libra_d2.engine.loce import class_balanced_image_indices, prefill_feature_memory
from libra_d2.modeling.feature_memory import FeatureMemory, sample_memory_classes
from libra_d2.modeling.freeze import freeze_from_cfg
from libra_d2.modeling.roi_heads import MemoryBatch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE2 = "configs/LT-Shapes/loce_mask_rcnn_R_18_FPN_tiny_stage2.yaml"
VARIANTS = {"stage 2, EBL (no MFS)": False, "stage 2, EBL + MFS": True}
BASE = "stage 2, EBL (no MFS)"


def build(mfs, device="cpu"):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, STAGE2))
    cfg.merge_from_list(["MODEL.LOCE.MFS.ENABLED", mfs, "MODEL.DEVICE", device])
    torch.manual_seed(0)
    model = build_model(cfg)
    freeze_from_cfg(cfg, model)
    return cfg, model, build_optimizer(cfg, model)


def memory_batch(model, memory, k=8, m=4):
    scores = model.roi_heads.box_predictor.mean_score.score[:-1]
    classes = sample_memory_classes(scores, k, available=memory.available())
    return MemoryBatch(*memory.sample(classes, m))


def footprint_lines():
    lines = ["| storage | bytes per process | GiB |", "|---|---|---|"]
    for dtype in ("float32", "float16"):
        n = FeatureMemory.estimate_nbytes(1203, 80, (256, 7, 7), dtype=dtype)
        lines.append("| {} | {:,} | {:.2f} |".format(dtype, n, n / 2**30))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    ap.add_argument("--repeats", type=int, default=50, help="repeats of the MFS pieces alone")
    ap.add_argument("--output", default="docs/benchmarks/loce.md")
    ap.add_argument("--note", default="", help="a line added under the tables (e.g. machine load)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    add_device_argument(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = device_sync(args.device)

    built = {name: build(mfs, args.device) for name, mfs in VARIANTS.items()}
    cfg0 = built[BASE][0]
    mapper = CheckedDatasetMapper(cfg0, is_train=True)
    dicts = DatasetCatalog.get(cfg0.DATASETS.TRAIN[0])
    batch = [mapper(dict(r)) for r in dicts[: cfg0.SOLVER.IMS_PER_BATCH]]

    _, mfs_model, _ = built["stage 2, EBL + MFS"]
    heads = mfs_model.roi_heads
    memory = FeatureMemory(heads.num_classes, 80, heads.memory_feature_shape)
    heads.attach_memory(memory)
    t0 = time.perf_counter()
    idx = class_balanced_image_indices(dicts, heads.num_classes, 5)
    prefill_feature_memory(mfs_model, [dicts[i] for i in idx], mapper, batch_size=8)
    prefill_s = time.perf_counter() - t0

    def train_step(model, opt, mfs):
        model.train()
        with EventStorage():
            if mfs:
                model.roi_heads.set_memory_batch(memory_batch(model, memory))
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

    for name, (_, model, opt) in built.items():  # warm-up
        train_step(model, opt, VARIANTS[name])
    times = {k: [] for k in built}
    for _ in range(args.rounds):
        for name, (_, model, opt) in built.items():
            times[name] += [
                timed(lambda: train_step(model, opt, VARIANTS[name]), sync)
                for _ in range(args.steps)
            ]
    med = {k: statistics.median(v) for k, v in times.items()}

    # the MFS pieces alone
    sample_t = statistics.median(
        timed(lambda: memory_batch(mfs_model, memory), sync) for _ in range(args.repeats)
    )
    with torch.no_grad():
        images = mfs_model.preprocess_image(batch)
        feats = mfs_model.backbone(images.tensor)
    targets = [b["instances"].to(args.device) for b in batch]
    push_t = statistics.median(
        timed(lambda: heads.push_to_memory(feats, targets), sync) for _ in range(args.repeats)
    )
    num_gt = sum(len(t) for t in targets)

    lines = [
        machine_line(
            args.device,
            "; {} rounds x {} steps per variant, median".format(args.rounds, args.steps),
        ),
        "",
    ]
    lines += [
        "Tiny LT-Shapes Mask R-CNN stage 2 (backbone + box FCs frozen, EBL), batch of {} 128 px "
        "images; MFS adds k 8 x m 4 = 32 memory rows to the 8 x 128 sampled RoIs:".format(
            len(batch)
        ),
        "",
        "| variant | train step ms | ratio |",
        "|---|---|---|",
    ]
    for name in built:
        lines.append(
            "| {} | {:.0f} | {:.2f}x |".format(name, med[name] * 1e3, med[name] / med[BASE])
        )
    mfs_step = med["stage 2, EBL + MFS"]
    lines += [
        "",
        "MFS pieces alone:",
        "",
        "| piece | ms | share of the MFS train step |",
        "|---|---|---|",
        "| draw the memory batch (class sampler + gather 32 rows) | {:.2f} | {:.1%} |".format(
            sample_t * 1e3, sample_t / mfs_step
        ),
        "| pool + push 16 jittered boxes x {} GT boxes | {:.2f} | {:.1%} |".format(
            num_gt, push_t * 1e3, push_t / mfs_step
        ),
        "",
        "Class-balanced pre-fill (5 images per class, {} images, {} rows stored): "
        "{:.1f} s.".format(len(idx), len(memory), prefill_s),
        "",
        "Feature memory for LVIS v1 (1203 classes x M 80 x 256x7x7, + fp32 targets), per "
        "process:",
        "",
    ] + footprint_lines()
    if args.note:
        lines += ["", args.note]
    write_report("\n".join(lines), args.output, "LOCE benchmark (dev/benchmark_loce.py)")


if __name__ == "__main__":
    main()
