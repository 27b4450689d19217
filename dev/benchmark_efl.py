#!/usr/bin/env python3
"""Benchmark: Equalized Focal Loss forward+backward WITH gradient statistics vs fvcore's focal loss.

    python dev/benchmark_efl.py [--anchors 100000] [--classes 40] [--repeats 30] [--warmup 5]
                                [--threads N] [--device cpu|cuda]

Timed (median over repeats, after warm-up), each on the same random RetinaNet-like batch (about 1%
positive anchors, logits around the 0.01 prior):

* fvcore ``sigmoid_focal_loss`` (gamma 2, alpha 0.25, sum) forward + backward;
* ``EqualizedFocalLoss`` in training mode: forward + backward + statistics update (the fused path
  the detector uses);
* for reference, the unfused path: autograd through ``equalized_focal_loss`` + ``efl_logit_grad`` +
  ``accumulate_gradient_statistics`` (what a straightforward implementation without a second backward
  would cost).

The target is a ratio <= 1.3 for the fused path.
"""

import argparse
import os
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchors", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--target", type=float, default=1.3)
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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
    base, base_min = results[0][1], results[0][2]

    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"anchors={args.anchors} classes={args.classes} positives={num_pos} "
        f"repeats={args.repeats} warmup={args.warmup}"
    )
    width = max(len(name) for name, _, _ in results)
    print(f"| {'variant'.ljust(width)} | median ms | ratio (median) | min ms | ratio (min) |")
    print(f"|{'-' * (width + 2)}|-----------|----------------|--------|-------------|")
    for name, med, low in results:
        print(
            f"| {name.ljust(width)} | {med * 1e3:9.2f} | {med / base:14.2f} "
            f"| {low * 1e3:6.1f} | {low / base_min:11.2f} |"
        )
    fused_ratio = results[1][1] / base
    verdict = "OK" if fused_ratio <= args.target else "OVER TARGET"
    print(f"fused ratio {fused_ratio:.2f} (target <= {args.target}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
