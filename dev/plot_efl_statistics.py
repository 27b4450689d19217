#!/usr/bin/env python
"""Per-category statistics of EFL models: gamma_j against training frequency, and the EFL paper's
Fig. 4 (mean predicted score of positive vs negative anchors, per category).

    python dev/plot_efl_statistics.py \
        --model EFL configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml output/.../model_final.pth \
        [--model "focal loss" CONFIG2 WEIGHTS2 ...] [--dataset lt_shapes_val] [--num-images 64] \
        [--output-dir docs/efl] [--opts KEY VALUE ...]

For every ``--model LABEL CONFIG WEIGHTS``:

* ``gamma_j`` and ``g_j`` are read from the checkpoint's EFL buffers (``efl.statistics.*``; the
  effective ``gamma_j``, with the model's USE_FOCUSING switch). Models without them (a plain
  RetinaNet) appear only in the score plot.
* On ``--num-images`` images of ``--dataset`` (default: the config's first test set), the model's
  anchors are labelled with its own matcher (max-IoU or ATSS) against the ground truth, and for each
  category j the mean ``sigmoid(logit_j)`` is taken over its positive anchors (anchors assigned to a
  GT of class j) and over its negative anchors (every other non-ignored anchor). The classifier's
  score is used (for the IoU branch, without the IoU factor).

Training frequency = number of training images containing the category (the training set's
``class_image_count`` metadata, else counted), groups r / c / f by LVIS's thresholds.

Writes ``efl_gamma_vs_frequency.png``, ``efl_score_margin.png`` and ``efl_statistics.json`` (all
numbers) to ``--output-dir``.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import libra_d2  # noqa: E402,F401  isort: skip (first: registers components)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.layers import cat  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K  # noqa: E402

from libra_d2.config import add_libra_config  # noqa: E402
from libra_d2.data import CheckedDatasetMapper  # noqa: E402
from libra_d2.data.class_frequency import (  # noqa: E402
    training_class_image_counts,
    training_frequency_groups,
)
from libra_d2.data.frequency_groups import frequency_group_of  # noqa: E402
from libra_d2.engine.setup import merge_cfg_checked  # noqa: E402

GROUP_COLORS = {"r": "tab:red", "c": "tab:orange", "f": "tab:blue"}
MARKERS = ["o", "s", "^", "D", "v", "P"]


def load_model(config_file, weights, opts):
    cfg = get_cfg()
    add_libra_config(cfg)
    merge_cfg_checked(cfg, config_file, list(opts))
    cfg.MODEL.DEVICE = "cpu" if not torch.cuda.is_available() else cfg.MODEL.DEVICE
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    model = build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    return cfg, model.eval()


@torch.no_grad()
def mean_scores(cfg, model, dataset, num_images, batch_size=4):
    """Per-class mean classifier score over positive and over negative anchors (two (K,) arrays)."""
    K = model.num_classes
    mapper = CheckedDatasetMapper(
        is_train=True,  # keeps the annotations; test-time resizing, no flip
        augmentations=[T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)],
        image_format=cfg.INPUT.FORMAT,
    )
    records = DatasetCatalog.get(dataset)[:num_images]
    sums = torch.zeros(2, K, dtype=torch.float64)
    counts = torch.zeros(2, K, dtype=torch.float64)
    for start in range(0, len(records), batch_size):
        batch = [mapper(dict(r)) for r in records[start : start + batch_size]]
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        predictions = model.head(features)
        logits = [permute_to_N_HWA_K(x, K) for x in predictions[0]]  # (N, HWA, K) per level
        anchors = model.anchor_generator(features)
        gt_labels, _ = model.label_anchors(
            anchors, [b["instances"].to(model.device) for b in batch]
        )
        scores = cat(logits, dim=1).sigmoid().double()  # (N, R, K)
        for n, labels in enumerate(gt_labels):
            valid = labels >= 0
            s = scores[n][valid]
            onehot = torch.nn.functional.one_hot(labels[valid], K + 1)[:, :K].double()
            sums[0] += (s * onehot).sum(0)
            counts[0] += onehot.sum(0)
            sums[1] += (s * (1 - onehot)).sum(0)
            counts[1] += (1 - onehot).sum(0)
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))
    return means[0].numpy(), means[1].numpy(), counts[0].numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", nargs=3, action="append", required=True, metavar=("LABEL", "CONFIG", "WEIGHTS")
    )
    parser.add_argument(
        "--dataset", default=None, help="images to score (default: config's test set)"
    )
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--output-dir", default="output/efl_statistics")
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides applied to every model",
    )
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)

    report = {}
    for label, config_file, weights in args.model:
        cfg, model = load_model(config_file, weights, args.opts)
        K = model.num_classes
        counts = training_class_image_counts(cfg.DATASETS.TRAIN, K).numpy()
        groups = training_frequency_groups(cfg.DATASETS.TRAIN, K) or [
            frequency_group_of(float(c)) for c in counts
        ]
        dataset = args.dataset or (
            cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else cfg.DATASETS.TRAIN[0]
        )
        pos, neg, num_pos = mean_scores(cfg, model, dataset, args.num_images)
        entry = {
            "config": config_file,
            "weights": weights,
            "dataset": dataset,
            "num_images": min(args.num_images, len(DatasetCatalog.get(dataset))),
            "classes": list(
                MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes", range(K))
            ),
            "train_image_count": counts.tolist(),
            "group": groups,
            "mean_score_pos": pos.tolist(),
            "mean_score_neg": neg.tolist(),
            "num_pos_anchors": num_pos.tolist(),
        }
        if hasattr(model, "efl"):
            gamma, weight = model.efl.focusing_factors()
            entry.update(
                gamma=gamma.tolist(),
                weight=weight.tolist(),
                grad_ratio=model.efl.statistics.ratio.tolist(),
            )
        report[label] = entry
        print(
            f"{label}: {dataset}, {entry['num_images']} images; "
            + (
                "gamma_j in [{:.2f}, {:.2f}]".format(min(entry["gamma"]), max(entry["gamma"]))
                if "gamma" in entry
                else "no EFL buffers"
            )
        )

    with open(os.path.join(args.output_dir, "efl_statistics.json"), "w") as f:
        json.dump(report, f, indent=1)

    # gamma_j against training frequency
    efl_models = [(lab, e) for lab, e in report.items() if "gamma" in e]
    if efl_models:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for m, (lab, e) in enumerate(efl_models):
            x = np.maximum(np.array(e["train_image_count"]), 1)
            colors = [GROUP_COLORS.get(g, "gray") for g in e["group"]]
            marker = MARKERS[m % len(MARKERS)]
            ax.scatter(
                x,
                e["gamma"],
                c=colors,
                marker=marker,
                edgecolors="black",
                linewidths=0.4,
                alpha=0.8,
            )
            ax.scatter([], [], c="lightgray", marker=marker, edgecolors="black", label=lab)
        for g, color in GROUP_COLORS.items():
            ax.scatter([], [], c=color, label={"r": "rare", "c": "common", "f": "frequent"}[g])
        ax.set_xscale("log")
        ax.set_xlabel("training images containing the category (log)")
        ax.set_ylabel(r"focusing factor $\gamma_j$")
        ax.set_title(r"EFL: $\gamma_j = \gamma_b + s(1 - g_j)$ per category")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(args.output_dir, "efl_gamma_vs_frequency.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        print("wrote", path)

    # Fig. 4: mean score of positives vs negatives per category
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.5))
    for m, (lab, e) in enumerate(report.items()):
        order = np.argsort(np.array(e["train_image_count"]), kind="stable")
        pos, neg = np.array(e["mean_score_pos"])[order], np.array(e["mean_score_neg"])[order]
        idx = np.arange(len(order))
        line = top.plot(
            idx, pos, marker=MARKERS[m % len(MARKERS)], ms=3, label=f"{lab}: positives"
        )[0]
        top.plot(idx, neg, ls="--", color=line.get_color(), label=f"{lab}: negatives")
        bottom.bar(
            idx + (m - (len(report) - 1) / 2) * 0.8 / len(report),
            pos - neg,
            width=0.8 / len(report),
            color=line.get_color(),
            label=lab,
        )
    first = next(iter(report.values()))
    order = np.argsort(np.array(first["train_image_count"]), kind="stable")
    groups = [first["group"][i] for i in order]
    for ax in (top, bottom):
        for i, g in enumerate(groups):
            ax.axvspan(i - 0.5, i + 0.5, color=GROUP_COLORS.get(g, "gray"), alpha=0.06, lw=0)
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.grid(alpha=0.3)
    top.set_ylabel("mean predicted score")
    values = np.array(
        [v for e in report.values() for v in e["mean_score_pos"] + e["mean_score_neg"]]
    )
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() > 10 * values.min():
        top.set_yscale("log")
    top.set_title("mean score of positive / negative anchors per category (rare -> frequent)")
    top.legend(fontsize=7, ncol=2)
    bottom.set_ylabel("positives - negatives")
    bottom.set_xlabel("categories sorted by training frequency (shading: r / c / f)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.output_dir, "efl_score_margin.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
