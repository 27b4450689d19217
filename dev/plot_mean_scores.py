#!/usr/bin/env python
"""LOCE's mean classification score per category, sorted by training frequency (the paper's
Fig. 1 / Fig. 4), read from the ``roi_heads.box_predictor.mean_score.score`` buffer of one or more
checkpoints (LOCEROIHeads models: a track-only stage 1, a stage-2 fine-tune, ...).

    python dev/plot_mean_scores.py output/loce/stage_1_baseline/model_final.pth \
        output/loce/ebl_mfs_loce/model_final.pth [--labels "stage 1" LOCE] \
        [--dataset lt_shapes_train] [--output docs/loce_mean_scores.png]

Training frequency = number of training images containing the category (the dataset's
``class_image_count`` metadata, else counted from its dicts); r / c / f by LVIS's thresholds
(<= 10, <= 100, > 100 images). The background entry is left out. Also writes the numbers next to
the picture (same name, ``.json``).
"""

import argparse
import json
import os

import libra_d2  # noqa: F401  isort: skip (registers datasets)
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from libra_d2.data.class_frequency import training_class_image_counts  # noqa: E402
from libra_d2.data.frequency_groups import frequency_group_of  # noqa: E402

KEY = "roi_heads.box_predictor.mean_score.score"
GROUP_COLORS = {"r": "#d62728", "c": "#ff7f0e", "f": "#1f77b4"}


def read_mean_scores(path):
    """The foreground mean scores (C,) saved in a checkpoint (the background entry dropped)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = state.get("model", state)
    if KEY not in model:
        raise SystemExit("{} has no {} (not a LOCEROIHeads model)".format(path, KEY))
    return torch.as_tensor(model[KEY]).float()[:-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--labels", nargs="*", default=None)
    ap.add_argument("--dataset", default="lt_shapes_train", help="training set (frequencies)")
    ap.add_argument("--output", default="output/loce/mean_scores.png")
    args = ap.parse_args()
    labels = args.labels or [os.path.basename(os.path.dirname(p)) or p for p in args.checkpoints]
    scores = [read_mean_scores(p) for p in args.checkpoints]
    num_classes = scores[0].numel()
    counts = training_class_image_counts([args.dataset], num_classes)
    order = sorted(range(num_classes), key=lambda c: (-float(counts[c]), c))
    groups = [frequency_group_of(float(counts[c])) for c in order]

    fig, ax = plt.subplots(figsize=(max(6, num_classes * 0.05 + 4), 4))
    x = list(range(num_classes))
    for label, s in zip(labels, scores):
        ax.plot(
            x, [float(s[c]) for c in order], marker="." if num_classes <= 100 else None, label=label
        )
    for i, g in enumerate(groups):  # frequency group as a band under the curves
        ax.axvspan(i - 0.5, i + 0.5, ymax=0.02, color=GROUP_COLORS.get(g, "gray"), lw=0)
    ax.set_xlabel("category, sorted by training images (r / c / f band at the bottom)")
    ax.set_ylabel("mean classification score")
    ax.set_title("LOCE mean classification score per category")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    fig.savefig(args.output, dpi=120)
    data = {
        "categories_by_frequency": order,
        "train_image_counts": [float(counts[c]) for c in order],
        "groups": groups,
        "mean_scores": {lab: [float(s[c]) for c in order] for lab, s in zip(labels, scores)},
    }
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(data, f, indent=1)
    for lab, s in zip(labels, scores):
        per = {g: [float(s[c]) for c, gg in zip(order, groups) if gg == g] for g in "rcf"}
        print(lab + ": " + ", ".join("%s %.4f" % (g, sum(v) / len(v)) for g, v in per.items() if v))
    print("wrote", args.output)


if __name__ == "__main__":
    main()
