#!/usr/bin/env python3
"""Benchmark: Equalized Focal Loss forward+backward WITH gradient statistics vs fvcore's focal loss,
and a full tiny training step of EFLRetinaNet vs Detectron2's RetinaNet.

    python dev/benchmark_efl.py [--anchors 100000] [--classes 40] [--repeats 30] [--warmup 5]
                                [--threads N] [--device cpu|cuda]
                                [--step-config configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml]
                                [--step-repeats 20] [--step-warmup 3] [--skip-loss] [--skip-step]
                                [--output docs/benchmarks/efl.md]

Part 1, the loss alone. Timed (median over repeats, after warm-up), each on the same random
RetinaNet-like batch (about 1% positive anchors, logits around the 0.01 prior):

* fvcore ``sigmoid_focal_loss`` (gamma 2, alpha 0.25, sum) forward + backward;
* ``EqualizedFocalLoss`` in training mode: forward + backward + statistics update (the fused path
  the detector uses);
* for reference, the unfused path: autograd through ``equalized_focal_loss`` + ``efl_logit_grad`` +
  ``accumulate_gradient_statistics`` (what a straightforward implementation without a second
  backward would cost).

The target is a ratio <= 1.3 for the fused path.

Part 2, a full training step (forward, losses, backward, SGD step; no data loading) of the tiny
LT-Shapes model of ``--step-config`` built twice from the same weights: once as Detectron2's
``RetinaNet`` (focal loss, EMA normaliser) and once as ``EFLRetinaNet`` (EFL with statistics and
logging, normaliser = positives). Same fixed batch of ``SOLVER.IMS_PER_BATCH`` synthetic images at
the config's training size with 2-6 boxes each; the two models alternate within every round
(rotating order), median over rounds. The target is a ratio <= 1.05.

Both tables are printed and, with ``--output``, written as markdown with the machine's details.
"""

import argparse
import os
import shlex
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fvcore.nn import sigmoid_focal_loss  # noqa: E402

from libra_d2.layers.equalized_focal_loss import (  # noqa: E402
    EqualizedFocalLoss,
    accumulate_gradient_statistics,
    efl_focusing_factors,
    efl_logit_grad,
    equalized_focal_loss,
)


def make_batch(num_anchors: int, num_classes: int, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    prior = -torch.log(torch.tensor((1 - 0.01) / 0.01)).item()
    logits = (prior + 2.0 * torch.randn(num_anchors, num_classes, generator=gen)).to(device)
    labels = torch.full((num_anchors,), num_classes, dtype=torch.long)
    positive = torch.rand(num_anchors, generator=gen) < 0.01
    labels[positive] = torch.randint(0, num_classes, (int(positive.sum()),), generator=gen)
    targets = F.one_hot(labels, num_classes + 1)[:, :num_classes].float().to(device)
    return logits, targets, max(int(positive.sum()), 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_interleaved(fns, repeats: int, warmup: int, device: torch.device):
    """Median seconds per function. The functions alternate within every repeat (rotating order), so
    load from other processes on a shared machine hits all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for rep in range(repeats):
        order = [(rep + k) % len(fns) for k in range(len(fns))]
        for k in order:
            _sync(device)
            start = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times], [min(ts) for ts in times]


def markdown_table(results, unit_scale=1e3, unit="ms"):
    """``results``: [(name, median_s, min_s)]; ratios relative to the first row."""
    base, base_min = results[0][1], results[0][2]
    width = max(len(name) for name, _, _ in results)
    lines = [
        f"| {'variant'.ljust(width)} | median {unit} | ratio (median) | min {unit} | ratio (min) |",
        f"|{'-' * (width + 2)}|-----------|----------------|--------|-------------|",
    ]
    for name, med, low in results:
        lines.append(
            f"| {name.ljust(width)} | {med * unit_scale:9.2f} | {med / base:14.2f} "
            f"| {low * unit_scale:6.1f} | {low / base_min:11.2f} |"
        )
    return lines


def loss_benchmark(args, device):
    logits, targets, num_pos = make_batch(args.anchors, args.classes, device)
    efl = EqualizedFocalLoss(args.classes).to(device).train()
    # A non-trivial state (g < 1 for some classes) so gamma_j varies per class, as during training.
    with torch.no_grad():
        efl.statistics.pos_grad.copy_(torch.linspace(0.05, 2.0, args.classes))
        efl.statistics.neg_grad.fill_(1.0)

    def run_fvcore():
        x = logits.detach().requires_grad_()
        loss = sigmoid_focal_loss(x, targets, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
        loss.backward()

    def run_efl():
        x = logits.detach().requires_grad_()
        loss = efl(x, targets, normalizer=num_pos)
        loss.backward()

    def run_efl_unfused():
        x = logits.detach().requires_grad_()
        gamma, weight = efl_focusing_factors(efl.statistics.ratio)
        loss = equalized_focal_loss(x, targets, gamma, weight, 0.25, "sum") / num_pos
        grad = efl_logit_grad(x, targets, gamma, weight, 0.25)
        pos, neg = accumulate_gradient_statistics(grad, targets)
        efl.statistics.update(pos / num_pos, neg / num_pos)
        loss.backward()

    rows = [
        ("fvcore sigmoid_focal_loss fwd+bwd", run_fvcore),
        ("EqualizedFocalLoss fwd+bwd+stats (fused)", run_efl),
        ("EFL autograd + efl_logit_grad + stats (unfused)", run_efl_unfused),
    ]
    medians, minima = timed_interleaved([fn for _, fn in rows], args.repeats, args.warmup, device)
    results = [(name, med, low) for (name, _), med, low in zip(rows, medians, minima)]
    header = (
        f"anchors={args.anchors} classes={args.classes} positives={num_pos} "
        f"repeats={args.repeats} warmup={args.warmup}"
    )
    ratio = results[1][1] / results[0][1]
    return header, markdown_table(results), ratio


def _synthetic_batch(num_images, size, num_classes, seed=0):
    from detectron2.structures import Boxes, Instances

    gen = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        n = int(torch.randint(2, 7, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * size * 0.7
        wh = size * (0.1 + 0.25 * torch.rand(n, 2, generator=gen))
        boxes = torch.cat([xy, (xy + wh).clamp(max=size - 1)], dim=1)
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (n,), generator=gen)
        batch.append({"image": torch.rand(3, size, size, generator=gen) * 255, "instances": inst})
    return batch


def step_benchmark(args, device):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer
    from detectron2.utils.events import EventStorage

    import libra_d2  # noqa: F401  (registers the models)

    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(args.step_config)
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RETINANET.NORM = ""  # Detectron2 0.6's RetinaNet cannot build GN heads
    efl_model = build_model(cfg).train()
    base_cfg = cfg.clone()
    base_cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    base_model = build_model(base_cfg).train()
    missing, unexpected = efl_model.load_state_dict(base_model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("efl.") for k in missing), (missing, unexpected)
    size = cfg.INPUT.MIN_SIZE_TRAIN[0] if cfg.INPUT.MIN_SIZE_TRAIN else 128
    batch = _synthetic_batch(cfg.SOLVER.IMS_PER_BATCH, size, cfg.MODEL.RETINANET.NUM_CLASSES)
    storage = EventStorage(0)
    storage.__enter__()

    def make_step(model):
        optimizer = build_optimizer(cfg, model)

        def step():
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            storage.iter += 1

        return step

    rows = [
        ("Detectron2 RetinaNet (focal loss)", make_step(base_model)),
        ("EFLRetinaNet (EFL + statistics + logging)", make_step(efl_model)),
    ]
    try:
        medians, minima = timed_interleaved(
            [fn for _, fn in rows], args.step_repeats, args.step_warmup, device
        )
    finally:
        storage.__exit__(None, None, None)
    results = [(name, med, low) for (name, _), med, low in zip(rows, medians, minima)]
    header = (
        f"config={args.step_config} images={cfg.SOLVER.IMS_PER_BATCH}x{size}px "
        f"classes={cfg.MODEL.RETINANET.NUM_CLASSES} rounds={args.step_repeats} "
        f"warmup={args.step_warmup}"
    )
    ratio = results[1][1] / results[0][1]
    return header, markdown_table(results), ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchors", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: leave the default)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--target", type=float, default=1.3)
    parser.add_argument(
        "--step-config", default="configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml"
    )
    parser.add_argument("--step-repeats", type=int, default=20)
    parser.add_argument("--step-warmup", type=int, default=3)
    parser.add_argument("--step-target", type=float, default=1.05)
    parser.add_argument("--skip-loss", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--output", default="", help="write the tables as markdown to this file")
    parser.add_argument(
        "--note", default="", help="a line added to the markdown (e.g. machine load)"
    )
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = "%.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else "?"
    machine = (
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} load={load}"
    )
    print(machine)
    sections = []
    if not args.skip_loss:
        header, table, ratio = loss_benchmark(args, device)
        verdict = "OK" if ratio <= args.target else "OVER TARGET"
        summary = f"fused ratio {ratio:.2f} (target <= {args.target}): {verdict}"
        title = "Loss only: EFL fwd+bwd with statistics vs fvcore focal loss"
        sections.append((title, header, table, summary))
    if not args.skip_step:
        header, table, ratio = step_benchmark(args, device)
        verdict = "OK" if ratio <= args.step_target else "OVER TARGET"
        summary = f"training-step ratio {ratio:.3f} (target <= {args.step_target}): {verdict}"
        sections.append(
            ("Full tiny training step: EFLRetinaNet vs RetinaNet", header, table, summary)
        )
    for title, header, table, summary in sections:
        print(f"\n{title}\n{header}")
        print("\n".join(table))
        print(summary)

    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        command = "python dev/benchmark_efl.py " + shlex.join(
            argv if argv is not None else sys.argv[1:]
        )
        lines = [
            "# Equalized Focal Loss: benchmarks",
            "",
            f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M')}.",
            "",
            f"Machine: `{machine}`",
            "",
        ]
        if args.note:
            lines += [args.note, ""]
        for title, header, table, summary in sections:
            lines += [f"## {title}", "", f"`{header}`", "", *table, "", summary, ""]
        with open(args.output, "w") as f:
            f.write("\n".join(lines))
        print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
