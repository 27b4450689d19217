#!/usr/bin/env python
"""Cost of R-CNN Gradient Annealing and Parallel R-CNN Modules, measured side by side in one run
on the tiny LT-Shapes Faster R-CNN (batch of 8 128 px images):

1. a training step (forward + backward + [RGA scaling] + SGD step): one R-CNN head, the same with
   RGA (target <= 1.02x), PRM with two heads (target <= 1.15x; nested sampling, the default), PRM
   + RGA, and PRM with independent sampling (MODEL.PRM.NESTED_SAMPLING False); the RoIs pooled per
   image (union of the heads' samples) are reported;
2. inference (same batch, no score threshold, 300 proposals per image): one head vs PRM's
   two-head ensemble (target <= 1.10x); RGA changes nothing at inference;
3. the RGA hook alone (its after_backward on real gradients), as a share of the training step,
   which is the precise form of its overhead (the step-time ratio is within timing noise).

Variants are interleaved round by round so that drifts of a shared machine hit them alike; the
reported number is the median. Writes the tables to --output (markdown) as well.

The number of positives sampled (hence the RoIs PRM pools) depends on the model's state: from
scratch the RPN finds few positives and the heads' samples nearly coincide. ``--weights PATH``
(repeatable; "" = from scratch, the default) starts every variant from a trained single-head
checkpoint (loaded into every PRM head), e.g. output/libra_rcnn/baseline/model_final.pth, where
the 1:1 head samples ~49 positives per image as in the middle of training; one table per state.

    python dev/benchmark_rga_prm.py [--rounds 5] [--steps 6] [--threads N] [--weights PATH ...]
        [--output docs/benchmarks/rga_prm.md]
"""

import argparse
import os
import statistics
import types

import libra_d2  # noqa: F401  isort: skip (first: registers components)
import torch
from bench_utils import (  # noqa: E402
    add_device_argument,
    device_sync,
    machine_line,
    timed,
    write_report,
)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from libra_d2.data import CheckedDatasetMapper
from libra_d2.engine.gradient_annealing import GradientAnnealing
from libra_d2.utils.events import flush_deferred_scalars

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
INDEPENDENT = ["MODEL.PRM.NESTED_SAMPLING", False]
# name: (config, RGA on, extra options)
VARIANTS = {
    "Faster R-CNN (one head)": (BASE, False, []),
    "+ RGA": (BASE, True, []),
    "PRM (two heads)": (PRM, False, []),
    "PRM + RGA": (PRM, True, []),
    "PRM, independent sampling": (PRM, False, INDEPENDENT),
}
ONE_HEAD = "Faster R-CNN (one head)"


def build(config, rga, opts=(), weights="", device="cpu"):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, config))
    # fixed inference workload: keep every detection (no score threshold) of the 300 proposals
    cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", device, *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    if weights:
        DetectionCheckpointer(model).load(weights)
    hook = None
    if rga:
        hook = GradientAnnealing(lambda0=7.0)
        hook.trainer = types.SimpleNamespace(
            model=model, iter=0, max_iter=cfg.SOLVER.MAX_ITER, storage=None
        )
    return cfg, model, build_optimizer(cfg, model), hook


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant per round")
    ap.add_argument("--hook-repeats", type=int, default=200)
    ap.add_argument("--output", default="docs/benchmarks/rga_prm.md")
    ap.add_argument("--note", default="", help="a line added under the tables (e.g. machine load)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_device_argument(ap)
    ap.add_argument(
        "--weights",
        action="append",
        default=None,
        help='start from this checkpoint ("": from scratch); repeatable, one table each',
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    lines = [
        machine_line(
            args.device,
            "; {} rounds x {} steps per variant, median".format(args.rounds, args.steps),
        )
    ]
    for weights in args.weights or [""]:
        lines += [""] + run_state(args, weights)
    if args.note:
        lines += ["", args.note]
    write_report("\n".join(lines), args.output, "RGA + PRM benchmark (dev/benchmark_rga_prm.py)")


def run_state(args, weights):
    """One table: every variant from ``weights`` ("" = from scratch), interleaved."""
    cfg0 = build(BASE, False, device=args.device)[0]
    sync = device_sync(args.device)
    mapper = CheckedDatasetMapper(cfg0, is_train=True)
    records = DatasetCatalog.get(cfg0.DATASETS.TRAIN[0])[: cfg0.SOLVER.IMS_PER_BATCH]
    batch = [mapper(dict(r)) for r in records]
    test_batch = [{"image": d["image"], "height": 128, "width": 128} for d in batch]
    built = {
        name: build(cfg, rga, opts, weights, args.device)
        for name, (cfg, rga, opts) in VARIANTS.items()
    }
    pooled = {}

    def train_step(model, opt, hook, name=None):
        model.train()
        with EventStorage() as storage:
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            if hook is not None:
                hook.trainer.storage = storage
                hook.after_backward()
            opt.step()
            flush_deferred_scalars(storage)
        if name is not None:  # RoIs pooled per image; one head: its sample
            fg = storage.history("roi_head/num_fg_samples").latest()
            if "prm/pooled_rois_per_image" in storage.histories():
                rois = storage.history("prm/pooled_rois_per_image").latest()
            else:
                rois = fg + storage.history("roi_head/num_bg_samples").latest()
            pooled.setdefault(name, []).append((rois, fg))

    def infer(model):
        model.eval()
        with torch.no_grad():
            model(test_batch)

    for _, model, opt, hook in built.values():  # warm-up (and RGA's parameter selection)
        if hook is not None:
            hook.before_train()
        train_step(model, opt, hook)
        infer(model)
    train_t = {k: [] for k in built}
    infer_t = {k: [] for k in built}
    for _ in range(args.rounds):
        for name, (_, model, opt, hook) in built.items():
            train_t[name] += [
                timed(lambda: train_step(model, opt, hook, name), sync) for _ in range(args.steps)
            ]
            if hook is None:  # RGA does not change inference
                infer_t[name] += [timed(lambda: infer(model), sync) for _ in range(args.steps)]

    # the RGA hook alone, on the gradients of the last step
    hook_t = {}
    for name, (_, model, _, hook) in built.items():
        if hook is None:
            continue
        with EventStorage() as storage:
            hook.trainer.storage = storage
            hook_t[name] = statistics.median(
                timed(hook.after_backward, sync) for _ in range(args.hook_repeats)
            )

    med = {k: statistics.median(v) for k, v in train_t.items()}
    imed = {k: statistics.median(v) for k, v in infer_t.items() if v}
    lines = [
        "{}, tiny LT-Shapes Faster R-CNN, batch of {} 128 px images (targets: RGA <= 1.02x "
        "train; PRM <= 1.15x train, <= 1.10x inference):".format(
            "From weights `{}`".format(weights) if weights else "From scratch", len(batch)
        ),
        "",
        "| model | RoIs pooled / image (positives of the 1:1 head) | train step ms | ratio "
        "| inference ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name in built:
        inf = imed.get(name)
        inf_cells = (
            "{:.0f} | {:.2f}x".format(inf * 1e3, inf / imed[ONE_HEAD])
            if inf is not None
            else "= without RGA | -"
        )
        rois = statistics.mean(r for r, _ in pooled[name])
        fg = statistics.mean(f for _, f in pooled[name])
        lines.append(
            "| {} | {:.0f} ({:.0f}) | {:.0f} | {:.2f}x | {} |".format(
                name, rois, fg, med[name] * 1e3, med[name] / med[ONE_HEAD], inf_cells
            )
        )
    lines += [
        "",
        "RGA hook alone (after_backward: scale the R-CNN gradients, log lambda):",
        "",
        "| model | scaled tensors | hook ms | share of its train step |",
        "|---|---|---|---|",
    ]
    for name, t in hook_t.items():
        hook = built[name][3]
        lines.append(
            "| {} | {} | {:.3f} | {:.2%} |".format(
                name, len(hook.parameter_names), t * 1e3, t / med[name]
            )
        )
    return lines


if __name__ == "__main__":
    main()
