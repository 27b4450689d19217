"""The diagnosis of a config on its training data: measure the four imbalances on a few batches and
write ``report.md`` with PNG figures and ``report.json`` (``projects/diagnose.py`` is the command).

The model is the config's (``build_model``), with ``MODEL.WEIGHTS`` loaded when given. It runs in
training mode, as the statistics arise in training, but with every BatchNorm in eval mode and
without gradients, so nothing of the model changes. Feature energies are measured only with a
trained detector's checkpoint: the energies of an untrained pyramid say nothing about the trained
one. A checkpoint counts as a trained detector's when loading it sets parameters outside the
backbone; the tiny configs' own ``MODEL.WEIGHTS``, a pre-trained ResNet, only initialise training.
"""

import json
import logging
import math
import os
from typing import Dict, List

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from torch import nn

from .class_imbalance import LVIS_REPEAT_THRESHOLD, class_imbalance
from .feature_imbalance import pyramid_energy
from .objective_imbalance import (
    add_statistics,
    sigmoid_gradient_statistics,
    softmax_gradient_statistics,
    summarise,
)
from .sample_imbalance import HARD_IOU, hard_fraction, negative_ious, pool_negative_ious

__all__ = ["diagnose", "write_report"]

logger = logging.getLogger(__name__)
#: the histogram bins of negative IoUs (negatives are below the foreground threshold, <= 0.5 in
#: every config here)
IOU_BINS = np.linspace(0.0, 0.5, 26)
GROUP_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
GROUP_COLORS = {"r": "#d62728", "c": "#ff7f0e", "f": "#1f77b4"}


def _first_box_branch(roi_heads):
    """(box head, box predictor) of the first stage / the regression module of the RoI heads, or
    None when they have neither."""
    head = getattr(roi_heads, "box_head", None)
    pred = getattr(roi_heads, "box_predictor", None)
    if head is None and hasattr(roi_heads, "box_heads"):  # Parallel R-CNN Modules
        k = getattr(roi_heads, "regression_head", 0)
        head, pred = roi_heads.box_heads[k], roi_heads.box_predictors[k]
    while isinstance(head, nn.ModuleList):  # Cascade: stage 0
        head, pred = head[0], pred[0]
    return (head, pred) if head is not None and pred is not None else None


#: the norms whose running statistics move in training mode (Detectron2's NaiveSyncBatchNorm is
#: a BatchNorm2d; FrozenBatchNorm2d has none to move)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _freeze_batchnorm_statistics(model):
    for m in model.modules():
        if isinstance(m, BATCH_NORMS):
            m.eval()


def load_weights(model, weights: str) -> bool:
    """Load ``weights`` into ``model``; whether they are a trained detector's, i.e. whether they
    set any parameter or buffer outside the backbone (a backbone's pre-trained weights set none)."""
    heads = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    DetectionCheckpointer(model).load(weights)
    after = model.state_dict()
    return any(not torch.equal(v, after[k]) for k, v in heads.items())


def _two_stage_batch(model, images, features, gt, acc):
    roi_heads = model.roi_heads
    proposals, _ = model.proposal_generator(images, features, gt)
    sampled = roi_heads.label_and_sample_proposals(proposals, gt)
    acc["sampled_negatives"].append(negative_ious(sampled, roi_heads.num_classes))
    thresholds = getattr(roi_heads.proposal_matcher, "thresholds", [0.0, 0.5])
    acc["all_negatives"].append(pool_negative_ious(proposals, gt, float(thresholds[1])))
    branch = _first_box_branch(roi_heads)
    if branch is None:
        acc["objective_note"] = "not measured: {} has no box head / predictor".format(
            type(roi_heads).__name__
        )
        return
    head, predictor = branch
    x = roi_heads.box_pooler(
        [features[f] for f in roi_heads.box_in_features], [p.proposal_boxes for p in sampled]
    )
    logits = predictor(head(x))[0]
    labels = torch.cat([p.gt_classes for p in sampled])
    if getattr(predictor, "cls_loss_type", "softmax") == "bcr":
        acc["objective_loss"] = "sigmoid cross-entropy (BCR's classifier, without its weights)"
        stats = sigmoid_gradient_statistics(
            logits[:, : roi_heads.num_classes], labels, alpha=-1, gamma=0.0
        )
    else:
        acc["objective_loss"] = "softmax cross-entropy of the first stage's classifier"
        stats = softmax_gradient_statistics(logits, labels)
    acc["objective"] = add_statistics(acc.get("objective"), stats)


def _dense_batch(model, features, gt, acc):
    feats = [features[f] for f in model.head_in_features]
    anchors = model.anchor_generator(feats)
    logits = torch.cat([permute_to_N_HWA_K(x, model.num_classes) for x in model.head(feats)[0]], 1)
    labels = torch.stack(model.label_anchors(anchors, gt)[0])
    positives = ((labels >= 0) & (labels < model.num_classes)).sum().item()
    acc["anchors_positive"] = acc.get("anchors_positive", 0) + positives
    negatives = (labels == model.num_classes).sum().item()
    acc["anchors_negative"] = acc.get("anchors_negative", 0) + negatives
    alpha = float(getattr(model, "focal_loss_alpha", 0.25))
    gamma = float(getattr(model, "focal_loss_gamma", 2.0))
    acc["objective_loss"] = "sigmoid focal loss (alpha {}, gamma {})".format(alpha, gamma)
    stats = sigmoid_gradient_statistics(
        logits.reshape(-1, model.num_classes), labels.reshape(-1), alpha=alpha, gamma=gamma
    )
    acc["objective"] = add_statistics(acc.get("objective"), stats)


def _batches(cfg, dicts, num_images, batch_size):
    mapper = DatasetMapper(cfg, is_train=True)
    picks = np.unique(np.linspace(0, len(dicts) - 1, num=min(num_images, len(dicts))).astype(int))
    batch = []
    for i in picks:
        batch.append(mapper(dicts[i]))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def measure_model(cfg, dicts, num_images: int = 64, batch_size: int = 4) -> Dict:
    """Sample, objective and (with weights) feature statistics of the config's model on
    ``num_images`` training images spread evenly over ``dicts``."""
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)  # the mapper's flips too: one report per config
    model = build_model(cfg)
    trained = bool(cfg.MODEL.WEIGHTS) and load_weights(model, cfg.MODEL.WEIGHTS)
    model.train()
    _freeze_batchnorm_statistics(model)
    acc = {"sampled_negatives": [], "all_negatives": [], "energy": []}
    two_stage = hasattr(model, "roi_heads") and hasattr(model, "proposal_generator")
    dense = isinstance(model, DenseDetector) and hasattr(model, "label_anchors")
    seen = 0
    with EventStorage(0):  # the heads log their training statistics; kept nowhere
        for batch in _batches(cfg, dicts, num_images, batch_size):
            images = model.preprocess_image(batch)
            gt = [x["instances"].to(model.device) for x in batch]
            if trained:  # the features and their energies from one backbone pass
                features, energy = pyramid_energy(model.backbone, images.tensor)
                acc["energy"].append(energy)
            else:
                features = model.backbone(images.tensor)
            if two_stage:
                _two_stage_batch(model, images, features, gt, acc)
            elif dense:
                _dense_batch(model, features, gt, acc)
            seen += len(batch)
    out = {
        "meta_architecture": type(model).__name__,
        "weights": cfg.MODEL.WEIGHTS or None,
        "trained": trained,
        "images": seen,
        "kind": "two-stage" if two_stage else "dense" if dense else "other",
    }
    if two_stage:
        sampled = torch.cat(acc["sampled_negatives"]).cpu()
        pool = torch.cat(acc["all_negatives"]).cpu()
        sampler_cfg = cfg.MODEL.ROI_HEADS.get("SAMPLER", None)
        out["sample"] = {
            "sampler": type(model.roi_heads).__name__,
            "negative_sampler": sampler_cfg.NEG if sampler_cfg is not None else "random",
            "bins": IOU_BINS.tolist(),
            "sampled_histogram": np.histogram(sampled.numpy(), IOU_BINS)[0].tolist(),
            "random_histogram": np.histogram(pool.numpy(), IOU_BINS)[0].tolist(),
            "sampled_count": int(sampled.numel()),
            "random_count": int(pool.numel()),
            "hard_iou": HARD_IOU,
            "hard_fraction_sampled": hard_fraction(sampled),
            "hard_fraction_random": hard_fraction(pool),
        }
    elif dense:
        neg, pos = float(acc["anchors_negative"]), float(acc["anchors_positive"])
        out["sample"] = {
            "sampler": "none (dense: every anchor)",
            "anchors_negative": neg,
            "anchors_positive": pos,
            "negatives_per_positive": neg / pos if pos else math.inf,
        }
    if "objective" in acc:
        out["objective"] = dict(summarise(acc["objective"]), loss=acc["objective_loss"])
    elif "objective_note" in acc:
        out["objective"] = {"note": acc["objective_note"]}
    if acc["energy"]:
        first = acc["energy"][0]
        out["feature"] = {
            "levels": first["levels"],
            "with_bfp": first["with_bfp"],
            "refine": first["refine"],
            "before": np.mean([e["before"] for e in acc["energy"]], axis=0).tolist(),
            "after": np.mean([e["after"] for e in acc["energy"]], axis=0).tolist(),
            "refine_change": (
                float(np.mean([e["refine_change"] for e in acc["energy"]]))
                if first["refine_change"] is not None
                else None
            ),
        }
    return out


def diagnose(
    cfg, output_dir: str, num_images: int = 64, batch_size: int = 4, config_file: str = None
) -> Dict:
    """Measure and write the report of ``cfg`` (frozen, with its datasets registered) into
    ``output_dir``; returns everything measured (also written as ``report.json``)."""
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("the config has no DATASETS.TRAIN to diagnose")
    dicts = get_detection_dataset_dicts(names, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    class_names = MetadataCatalog.get(names[0]).thing_classes
    groups = cfg.DATASETS.FREQUENCY_GROUPS
    uses_rfs = cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    result = {
        "config": config_file,
        "datasets": names,
        "class": class_imbalance(
            dicts,
            class_names,
            repeat_thresh=cfg.DATALOADER.REPEAT_THRESHOLD if uses_rfs else LVIS_REPEAT_THRESHOLD,
            rare_max=groups.RARE_MAX_IMAGES,
            common_max=groups.COMMON_MAX_IMAGES,
        ),
    }
    logger.info("Class statistics of %d images done; measuring the model", len(dicts))
    result.update(measure_model(cfg, dicts, num_images=num_images, batch_size=batch_size))
    write_report(result, output_dir)
    return result


# ---------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_class(stats, path):
    plt = _pyplot()
    classes = sorted(stats["classes"], key=lambda c: -c["images"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(classes)), 3.6))
    x = np.arange(len(classes))
    ax.bar(
        x,
        [max(c["images"], 0.5) for c in classes],
        color=[GROUP_COLORS[c["group"]] for c in classes],
    )
    ax.set_yscale("log")
    ax.set_ylabel("training images")
    ax.set_xticks(x)
    ax.set_xticklabels([c["name"] for c in classes], rotation=90, fontsize=6)
    ax2 = ax.twinx()
    factors = [c["rfs_factor"] if math.isfinite(c["rfs_factor"]) else np.nan for c in classes]
    ax2.plot(x, factors, "k.-", lw=1, ms=3)
    ax2.set_ylabel("RFS repeat factor (t = {})".format(stats["repeat_thresh"]))
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=GROUP_COLORS[g], label=GROUP_NAMES[g]) for g in "rcf"
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_title("Class imbalance: images per class, groups and repeat factors", fontsize=9)
    _save(plt, fig, path)


def _plot_sample(sample, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = np.asarray(sample["bins"])
    for key, label, color, fraction in (
        ("random_histogram", "random (all negatives)", "#7f7f7f", "hard_fraction_random"),
        ("sampled_histogram", "configured sampler", "#2ca02c", "hard_fraction_sampled"),
    ):
        counts = np.asarray(sample[key], dtype=np.float64)
        if counts.sum():
            density = counts / counts.sum() / np.diff(bins)
            ax.stairs(
                density,
                bins,
                lw=2,
                color=color,
                label="{}: {:.0%} with IoU >= {}".format(label, sample[fraction], HARD_IOU),
            )
    ax.set_xlabel("IoU of a negative RoI with its best ground truth")
    ax.set_ylabel("density")
    ax.set_title("Sample imbalance: negatives picked ({})".format(sample["sampler"]), fontsize=9)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def _plot_objective(result, path):
    plt = _pyplot()
    classes, obj = result["class"]["classes"], result["objective"]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for ax, key, label in (
        (axes[0], "ratio", "positive / negative gradient"),
        (axes[1], "mean_score", "mean score of its positives"),
    ):
        for g in "rcf":
            pts = [
                (c["images"], v)
                for c, v in zip(classes, obj[key])
                if c["group"] == g and v is not None and math.isfinite(v)
            ]
            if pts:
                ax.scatter(*zip(*pts), s=14, color=GROUP_COLORS[g], label=GROUP_NAMES[g])
        ax.set_xscale("log")
        if key == "ratio":
            ax.set_yscale("log")
        ax.set_xlabel("training images of the class")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Objective imbalance: " + obj["loss"], fontsize=9)
    _save(plt, fig, path)


def _plot_feature(feature, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    x = np.arange(len(feature["levels"]))
    after = "after BFP" if feature["with_bfp"] else "after BFP's integration (no refine)"
    ax.bar(x - 0.2, feature["before"], 0.4, label="FPN output", color="#7f7f7f")
    ax.bar(x + 0.2, feature["after"], 0.4, label=after, color="#9467bd")
    ax.set_xticks(x)
    ax.set_xticklabels(feature["levels"])
    ax.set_yscale("log")
    ax.set_ylabel("energy: mean of x^2")
    ax.set_title("Feature imbalance: energy per pyramid level", fontsize=9)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


# --------------------------------------------------------------------------------------- markdown
def _median(values):
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def group_medians(result, key) -> Dict[str, float]:
    classes, values = result["class"]["classes"], result["objective"][key]
    return {g: _median([v for c, v in zip(classes, values) if c["group"] == g]) for g in "rcf"}


def _spread(values) -> float:
    return max(values) / min(values) if values and min(values) > 0 else math.nan


def format_refine_change(change: float) -> str:
    """||refine(x) - x|| / ||x||, readable at both ends: two decimals from 0.1 up (1.03, not "1"),
    two significant digits below (0.0034, not "0.00")."""
    return "{:.2f}".format(change) if change >= 0.1 else "{:.2g}".format(change)


def findings(result) -> List[str]:
    """The measured signals, each with the libra_d2 configs that address it."""
    out = []
    cls = result["class"]
    rare = cls["groups"]["r"].get("classes", 0)
    out.append(
        "**Class**: the most frequent class is in {:.0f}x the images of the least frequent; "
        "{} of {} classes are rare. Addressed by repeat-factor sampling "
        "(`DATALOADER.SAMPLER_TRAIN RepeatFactorTrainingSampler`; at `REPEAT_THRESHOLD` {} "
        "this set's images would repeat up to {:.1f}x, and 1.0x is no change), Bucketed Class "
        "Re-weighting (`MODEL.ROI_BOX_HEAD.CLS_LOSS_TYPE bcr`, on a Libra R-CNN head), "
        "EFL (`efl_*` configs) and LOCE (`loce_*` configs).".format(
            cls["imbalance_ratio"],
            rare,
            len(cls["classes"]),
            cls["repeat_thresh"],
            cls["image_repeat"]["max"],
        )
    )
    sample = result.get("sample")
    if sample and "hard_fraction_sampled" in sample:
        balanced = sample.get("negative_sampler") == "iou_balanced"
        out.append(
            "**Sample**: {:.0%} of the negatives the configured sampler ({}) picks have IoU >= {}, "
            "against {:.0%} of all negatives (random sampling). {}".format(
                sample["hard_fraction_sampled"],
                sample.get("negative_sampler", sample["sampler"]),
                HARD_IOU,
                sample["hard_fraction_random"],
                (
                    "That difference is IoU-balanced sampling's."
                    if balanced
                    else "IoU-balanced sampling (`libra_faster_rcnn_*`, "
                    "`MODEL.ROI_HEADS.SAMPLER.NEG iou_balanced`) picks more of the hard ones."
                ),
            )
        )
    elif sample:
        out.append(
            "**Sample**: no sampler; {:.0f} negative anchors per positive one. The focal loss "
            "weighs them down; EFL (`efl_retinanet_*`, `efl_fcos_*`) does it per class.".format(
                sample["negatives_per_positive"]
            )
        )
    if "ratio" in result.get("objective", {}):
        ratio = group_medians(result, "ratio")
        score = group_medians(result, "mean_score")
        gradient = (
            "rare classes' positives are outweighed by their negatives, which is what EFL's "
            "per-class focusing (`efl_*`) acts on"
            if ratio["r"] < 0.5 * ratio["f"]
            else "the rare ratio is not below half the frequent one in this snapshot, so it "
            "gives EFL's focusing (`efl_*`) little to act on"
        )
        scoring = (
            "rare positives score far below frequent ones, which is what LOCE's Equilibrium Loss "
            "(`loce_*`, from the mean scores) acts on"
            if score["r"] < 0.5 * score["f"]
            else "the rare mean score is not below half the frequent one"
        )
        out.append(
            "**Objective**: median positive/negative gradient ratio rare {:.3g}, common {:.3g}, "
            "frequent {:.3g}: {}. Median mean score of the positives rare {:.3g}, frequent "
            "{:.3g}: {}.".format(
                ratio["r"], ratio["c"], ratio["f"], gradient, score["r"], score["f"], scoring
            )
        )
    feature = result.get("feature")
    if feature:
        refine = feature.get("refine_change")
        out.append(
            "**Feature**: the level energies spread {:.1f}x (max / min) at the FPN's output and "
            "{:.1f}x {}.{} The Balanced Feature Pyramid (`MODEL.BACKBONE.NAME "
            "build_resnet_bfp_backbone`, `libra_*` configs) is what integrates the levels.".format(
                _spread(feature["before"]),
                _spread(feature["after"]),
                "after BFP" if feature["with_bfp"] else "after BFP's integration",
                (
                    ""
                    if refine is None
                    else " Its {} refine changes the integrated feature by {} of its "
                    "norm.".format(feature["refine"], format_refine_change(refine))
                ),
            )
        )
    return out


def _fmt(v, spec=".3g"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def write_report(result: Dict, output_dir: str) -> str:
    """Write ``report.md``, its PNGs and ``report.json`` into ``output_dir``; returns the page's
    path."""
    os.makedirs(output_dir, exist_ok=True)
    cls = result["class"]
    lines = [
        "# Imbalance diagnosis",
        "",
        "Config: `{}`; training data: {} ({} images, {} instances, {} classes); model: {}, "
        "weights: {}; measured on {} training images.".format(
            result.get("config") or "-",
            ", ".join(result["datasets"]),
            cls["num_images"],
            cls["num_instances"],
            len(cls["classes"]),
            result.get("meta_architecture", "-"),
            (
                "`{}`{}".format(
                    result["weights"], "" if result.get("trained") else " (an initialisation)"
                )
                if result.get("weights")
                else "none (initial)"
            ),
            result.get("images", 0),
        ),
        "",
        "## Findings",
        "",
        *["- " + f for f in findings(result)],
        "",
        "These are measured signals on this data, not promises that a method helps."
        + (
            ""
            if result.get("trained")
            else " Without a trained detector's weights the sample and objective sections describe"
            " the initial model, i.e. the start of training; pass `MODEL.WEIGHTS` of a trained"
            " model for the rest."
        ),
        "",
        "## Class imbalance",
        "",
        "| group | classes | images per class | instances (share) | mean RFS factor |",
        "|---|---|---|---|---|",
    ]
    for g in "rcf":
        s = cls["groups"][g]
        if not s.get("classes"):
            lines.append("| {} | 0 | - | - | - |".format(GROUP_NAMES[g]))
            continue
        lines.append(
            "| {} | {} | {}-{} | {} ({:.1%}) | {} |".format(
                GROUP_NAMES[g],
                s["classes"],
                s["images_min"],
                s["images_max"],
                s["instances"],
                s["instance_share"],
                _fmt(s["rfs_factor_mean"], ".2f"),
            )
        )
    if cls["classes_without_images"]:
        lines += [
            "",
            "Classes without training images: " + ", ".join(cls["classes_without_images"]),
        ]
    _plot_class(cls, os.path.join(output_dir, "class_imbalance.png"))
    lines += ["", "![class imbalance](class_imbalance.png)", "", "## Sample imbalance", ""]
    sample = result.get("sample")
    if sample and "hard_fraction_sampled" in sample:
        _plot_sample(sample, os.path.join(output_dir, "sample_imbalance.png"))
        lines += [
            "| negatives | count | IoU >= {} |".format(HARD_IOU),
            "|---|---|---|",
            "| picked by {} ({}) | {} | {:.1%} |".format(
                sample["sampler"],
                sample["negative_sampler"],
                sample["sampled_count"],
                sample["hard_fraction_sampled"],
            ),
            "| all (random sampling's expectation) | {} | {:.1%} |".format(
                sample["random_count"], sample["hard_fraction_random"]
            ),
            "",
            "![sample imbalance](sample_imbalance.png)",
        ]
    elif sample:
        lines.append(
            "Dense detector, no sampler: {:.0f} negative and {:.0f} positive anchors ({:.0f} "
            "negatives per positive).".format(
                sample["anchors_negative"],
                sample["anchors_positive"],
                sample["negatives_per_positive"],
            )
        )
    else:
        lines.append("Not measured for this meta-architecture.")
    lines += ["", "## Objective imbalance", ""]
    obj = result.get("objective", {})
    if "ratio" in obj:
        _plot_objective(result, os.path.join(output_dir, "objective_imbalance.png"))
        ratio, score = group_medians(result, "ratio"), group_medians(result, "mean_score")
        lines += [
            "Loss: {}. Per class, the summed gradient magnitude on its positives over that on its "
            "negatives (EFL's g_j), and the mean score of its positives (LOCE's).".format(
                obj["loss"]
            ),
            "",
            "| group | median gradient ratio | median mean score |",
            "|---|---|---|",
            *[
                "| {} | {} | {} |".format(GROUP_NAMES[g], _fmt(ratio[g]), _fmt(score[g]))
                for g in "rcf"
            ],
            "",
            "![objective imbalance](objective_imbalance.png)",
        ]
    else:
        lines.append(obj.get("note", "Not measured for this meta-architecture."))
    lines += ["", "## Feature imbalance", ""]
    feature = result.get("feature")
    if feature:
        _plot_feature(feature, os.path.join(output_dir, "feature_imbalance.png"))
        lines += [
            "| level | " + " | ".join(feature["levels"]) + " |",
            "|---|" + "---|" * len(feature["levels"]),
            "| FPN output | " + " | ".join(_fmt(v) for v in feature["before"]) + " |",
            "| {} | ".format("after BFP" if feature["with_bfp"] else "after integration")
            + " | ".join(_fmt(v) for v in feature["after"])
            + " |",
            "",
            "![feature imbalance](feature_imbalance.png)",
        ]
        if feature.get("refine_change") is not None:
            lines += [
                "",
                "BFP's {} refine changes the integrated feature by {} of its norm "
                "(||refine(x) - x|| / ||x||; 0 would be no refinement).".format(
                    feature["refine"], format_refine_change(feature["refine_change"])
                ),
            ]
    else:
        lines.append("Measured with a trained detector's checkpoint only (pass `MODEL.WEIGHTS`).")
    path = os.path.join(output_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(output_dir, "report.json"), "w") as f:
        json.dump(_json_safe(result), f)
    return path


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _json_safe(obj.tolist())
    return obj
