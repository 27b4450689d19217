#!/usr/bin/env python
"""Time libra_d2's balanced samplers against Detectron2's ``subsample_labels``.

Setting (one image of the box head): 2,000 proposals around 20 GT boxes (GT boxes appended, as
Detectron2's ROI heads do), matched with Detectron2's ``Matcher([0.5], [0, 1])``, 512 RoIs,
positive fraction 0.25. Proposals are a mix of jittered GT boxes (an RPN that found the
objects) and random boxes, so the negatives spread over IoU [0, 0.5) with most near 0.
Two scenarios: "busy" (487 positives: more than the 128 positive slots, so the positive
sampler has to choose) and "sparse" (128 positives: all are kept, only negatives are sampled).

Prints, for each method, the median wall time of one call (many repeats after a warm-up; the
methods are interleaved round by round so that drifts of the machine hit them alike) and the
ratio to Detectron2's ``subsample_labels``.

    python dev/benchmark_sampler.py [--repeats 3000] [--threads N] [--scenario busy|sparse|both]
"""

import argparse
import statistics
import time

import torch
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, pairwise_iou

from libra_d2.modeling.matcher import MaxIoUMatcher
from libra_d2.modeling.sampling import libra_subsample_labels


def make_image(num_props=2000, num_gts=20, near_fraction=0.3, num_classes=80, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    W, H = 1333.0, 800.0
    wh = torch.rand(num_gts, 2, generator=g) * torch.tensor([300.0, 250.0]) + 20
    xy = torch.rand(num_gts, 2, generator=g) * (torch.tensor([W, H]) - wh)
    gt = torch.cat([xy, xy + wh], 1)
    gt_classes = torch.randint(0, num_classes, (num_gts,), generator=g)
    num_near = int(num_props * near_fraction)
    src = gt[torch.randint(0, num_gts, (num_near,), generator=g)]
    size = torch.cat([src[:, 2:] - src[:, :2]] * 2, 1)
    # jitter of +-(0..60)% of the box size: IoUs from ~0 up to ~1
    scale = torch.rand(num_near, 1, generator=g) * 0.6
    near = src + (torch.rand(num_near, 4, generator=g) * 2 - 1) * scale * size
    rnd_wh = torch.rand(num_props - num_near, 2, generator=g) * 400 + 10
    rnd_xy = torch.rand(num_props - num_near, 2, generator=g) * (torch.tensor([W, H]) - rnd_wh)
    far = torch.cat([rnd_xy, rnd_xy + rnd_wh], 1)
    props = torch.cat([near, far, gt], 0)  # GT appended, like Detectron2's ROI heads
    iou = pairwise_iou(Boxes(gt), Boxes(props))
    matches, match_labels = MaxIoUMatcher([0.5], [0, 1], False)(iou)
    max_ious = iou.max(0).values
    labels = gt_classes[matches]
    labels[match_labels == 0] = num_classes
    labels[match_labels == -1] = -1
    return (labels.to(device), max_ious.to(device), matches.to(device), num_classes)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument(
        "--rounds", type=int, default=10, help="interleaved rounds (repeats split over them)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument(
        "--scenario",
        choices=["busy", "sparse", "both"],
        default="both",
        help="busy: more positives than the 128 positive slots (the samplers choose "
        "among them); sparse: fewer positives than slots (all are kept)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for scenario in (["busy", "sparse"] if args.scenario == "both" else [args.scenario]):
        print(f"\n== scenario: {scenario}")
        run(args, near_fraction=0.3 if scenario == "busy" else 0.03)


def run(args, near_fraction):
    labels, max_ious, matches, bg = make_image(near_fraction=near_fraction, device=args.device)
    N = labels.numel()
    num_pos = int(((labels != -1) & (labels != bg)).sum())
    num_neg = int((labels == bg).sum())
    neg_ious = max_ious[labels == bg]
    hist = torch.histc(neg_ious.float().cpu(), bins=5, min=0, max=0.5).long().tolist()
    print(
        f"proposals {N} (incl. 20 GT), positives {num_pos}, negatives {num_neg}, "
        f"ignored {N - num_pos - num_neg}; negative IoU histogram over [0, .5) in 5 bins: {hist}; "
        f"IoU==0 negatives: {int((neg_ious == 0).sum())}"
    )
    print(
        f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"512 RoIs, positive fraction 0.25"
    )

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    common = dict(max_ious=max_ious, matched_idxs=matches)
    methods = {
        "detectron2 subsample_labels": lambda: subsample_labels(labels, 512, 0.25, bg),
        "libra random+random": lambda: libra_subsample_labels(labels, 512, 0.25, bg, **common),
        "libra iou_balanced+instance": lambda: libra_subsample_labels(
            labels, 512, 0.25, bg, pos_sampling="instance", neg_sampling="iou_balanced", **common
        ),
        "libra iou_balanced+instance (iou_upper=0.5)": lambda: libra_subsample_labels(
            labels,
            512,
            0.25,
            bg,
            pos_sampling="instance",
            neg_sampling="iou_balanced",
            iou_upper=0.5,
            **common,
        ),
        "libra iou_balanced (random pos)": lambda: libra_subsample_labels(
            labels, 512, 0.25, bg, neg_sampling="iou_balanced", **common
        ),
        "libra instance (random neg)": lambda: libra_subsample_labels(
            labels, 512, 0.25, bg, pos_sampling="instance", **common
        ),
        "libra iou_balanced+class": lambda: libra_subsample_labels(
            labels, 512, 0.25, bg, pos_sampling="class", neg_sampling="iou_balanced", **common
        ),
        "libra iou_balanced floor_thr=0 frac=0.5": lambda: libra_subsample_labels(
            labels,
            512,
            0.25,
            bg,
            pos_sampling="instance",
            neg_sampling="iou_balanced",
            floor_thr=0.0,
            floor_fraction=0.5,
            **common,
        ),
    }
    times = {k: [] for k in methods}
    for f in methods.values():
        for _ in range(args.warmup):
            f()
    sync()
    per_round = max(1, args.repeats // args.rounds)
    for _ in range(args.rounds):
        for name, f in methods.items():
            ts = times[name]
            for _ in range(per_round):
                t0 = time.perf_counter()
                f()
                sync()
                ts.append(time.perf_counter() - t0)
    base = statistics.median(times["detectron2 subsample_labels"])
    w = max(len(k) for k in methods)
    print(f"{'method':<{w}}  {'median ms':>9}  {'ratio vs D2':>11}")
    for name in methods:
        med = statistics.median(times[name])
        print(f"{name:<{w}}  {med * 1e3:9.4f}  {med / base:10.2f}x")


if __name__ == "__main__":
    main()
