#!/usr/bin/env python
"""Cost of R-CNN Gradient Annealing and Parallel R-CNN Modules, measured side by side in one run
on the tiny LT-Shapes Faster R-CNN (batch of 8 128 px images):

1. a training step (forward + backward + [RGA scaling] + SGD step): one R-CNN head, the same with
   RGA (target <= 1.02x), PRM with two heads (target <= 1.15x), PRM + RGA;
2. inference (same batch, no score threshold, 300 proposals per image): one head vs PRM's
   two-head ensemble (target <= 1.10x); RGA changes nothing at inference;
3. the RGA hook alone (its after_backward on real gradients), as a share of the training step,
   which is the precise form of its overhead (the step-time ratio is within timing noise).

Variants are interleaved round by round so that drifts of a shared machine hit them alike; the
reported number is the median. Writes the tables to --output (markdown) as well.

    python dev/benchmark_rga_prm.py [--rounds 5] [--steps 6] [--output docs/benchmarks/rga_prm.md]
"""
import argparse
import os
import statistics
import time
import types

import libra_d2  # noqa: F401  (first: registers components)
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from libra_d2.data import CheckedDatasetMapper
from libra_d2.engine.gradient_annealing import GradientAnnealing

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
# name: (config, RGA on)
VARIANTS = {
    "Faster R-CNN (one head)": (BASE, False),
    "+ RGA": (BASE, True),
    "PRM (two heads)": (PRM, False),
    "PRM + RGA": (PRM, True),
}
ONE_HEAD = "Faster R-CNN (one head)"


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build(config, rga):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, config))
    # fixed inference workload: keep every detection (no score threshold) of the 300 proposals
    cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    torch.manual_seed(0)
    model = build_model(cfg)
    hook = None
    if rga:
        hook = GradientAnnealing(lambda0=7.0)
        hook.trainer = types.SimpleNamespace(model=model, iter=0, max_iter=cfg.SOLVER.MAX_ITER,
                                             storage=None)
    return cfg, model, build_optimizer(cfg, model), hook


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant per round")
    ap.add_argument("--hook-repeats", type=int, default=200)
    ap.add_argument("--output", default="docs/benchmarks/rga_prm.md")
    ap.add_argument("--note", default="", help="a line added under the tables (e.g. machine load)")
    args = ap.parse_args()

    cfg0 = build(BASE, False)[0]
    mapper = CheckedDatasetMapper(cfg0, is_train=True)
    records = DatasetCatalog.get(cfg0.DATASETS.TRAIN[0])[: cfg0.SOLVER.IMS_PER_BATCH]
    batch = [mapper(dict(r)) for r in records]
    test_batch = [{"image": d["image"], "height": 128, "width": 128} for d in batch]
    built = {name: build(cfg, rga) for name, (cfg, rga) in VARIANTS.items()}

    def train_step(model, opt, hook):
        model.train()
        with EventStorage() as storage:
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            if hook is not None:
                hook.trainer.storage = storage
                hook.after_backward()
            opt.step()

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
            train_t[name] += [timed(lambda: train_step(model, opt, hook)) for _ in range(args.steps)]
            if hook is None:  # RGA does not change inference
                infer_t[name] += [timed(lambda: infer(model)) for _ in range(args.steps)]

    # the RGA hook alone, on the gradients of the last step
    hook_t = {}
    for name, (_, model, _, hook) in built.items():
        if hook is None:
            continue
        with EventStorage() as storage:
            hook.trainer.storage = storage
            hook_t[name] = statistics.median(timed(hook.after_backward) for _ in range(args.hook_repeats))

    med = {k: statistics.median(v) for k, v in train_t.items()}
    imed = {k: statistics.median(v) for k, v in infer_t.items() if v}
    lines = ["Machine: {} CPU threads, torch {}; {} rounds x {} steps per variant, median.".format(
        torch.get_num_threads(), torch.__version__, args.rounds, args.steps), ""]
    lines += ["Tiny LT-Shapes Faster R-CNN, batch of {} 128 px images (targets: RGA <= 1.02x train; "
              "PRM <= 1.15x train, <= 1.10x inference):".format(len(batch)), "",
              "| model | train step ms | ratio | inference ms | ratio |", "|---|---|---|---|---|"]
    for name in built:
        inf = imed.get(name)
        inf_cells = ("{:.0f} | {:.2f}x".format(inf * 1e3, inf / imed[ONE_HEAD]) if inf is not None
                     else "= without RGA | -")
        lines.append("| {} | {:.0f} | {:.2f}x | {} |".format(
            name, med[name] * 1e3, med[name] / med[ONE_HEAD], inf_cells))
    lines += ["", "RGA hook alone (after_backward: scale the R-CNN gradients, log lambda):", "",
              "| model | scaled tensors | hook ms | share of its train step |", "|---|---|---|---|"]
    for name, t in hook_t.items():
        hook = built[name][3]
        lines.append("| {} | {} | {:.3f} | {:.2%} |".format(
            name, len(hook.parameter_names), t * 1e3, t / med[name]))
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            f.write("# RGA + PRM benchmark (dev/benchmark_rga_prm.py)\n\n" + text + "\n")


if __name__ == "__main__":
    main()
