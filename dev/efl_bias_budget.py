#!/usr/bin/env python
"""What EFL's accumulated gradient sums say about a class's classification bias, per frequency
group, from runs' checkpoints (RetinaNet-style heads: ``head.cls_score.bias``, ``A x K``).

    python dev/efl_bias_budget.py output/efl_large_seeds/efl_s_8_seed_1 [more run folders] \
        [--checkpoint model_0000399.pth]

Each run folder holds Detectron2's ``config.yaml`` and the checkpoint (``model_final.pth``; an
earlier one replays the schedule up to its iteration). For a class j the
logit of anchor type a is ``w_aj . f + b_aj``, so the summed signed gradient of its A biases over
the run is exactly ``D_j = neg_j - pos_j``, EFL's accumulated sums (``efl.statistics``). With SGD
(momentum mu, learning rate eta_t, weight decay lambda on biases) the bias moves by both D and the
decay. Per group this prints:

* ``pos`` / ``neg``: the mean over the group's classes of the accumulated sums, and ``D``;
* ``bias``: the final bias (mean over classes and anchor types) against its prior init ``b0``;
* ``decay only`` / ``decay + D``: the final bias the optimizer's recursion gives from ``b0`` with
  no gradient, and with ``D`` spread evenly over the iterations (the run's LR schedule replayed);
  where ``decay + D`` matches ``bias``, the sums account for the bias's motion;
* ``hold``: ``lambda * sum_t sum_a |b_aj|``, the summed gradient that would keep the biases where
  they are against the decay. ``D`` near ``hold`` means the negatives hold a class's score down
  against the decay, and then ``g = pos / (pos + D)`` is far below 1 wherever ``pos << hold``;
  ``D`` far below ``hold`` means the bias drifted with the decay (``bias`` near ``decay only``).

``kappa = sum_t eta_t * lambda / (1 - mu)`` (printed per run) is the share of a bias the decay
alone would remove over the run when small. With a small kappa a rare class's bias stays near its
init and nothing raises its scores; near 1 or above the decay pulls the bias up, the class's
scores on its negatives rise, and so does their gradient (``neg``).
"""

import argparse
import math
import os

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)
import torch
from detectron2.config import get_cfg
from detectron2.solver import build_lr_scheduler

from libra_d2.config import add_libra_config
from libra_d2.data.class_frequency import training_frequency_groups
from libra_d2.modeling.class_statistics import ClassGradientRatio

GROUPS = (("r", "rare"), ("c", "common"), ("f", "frequent"))


def learning_rates(cfg):
    """The LR of every iteration of ``cfg``'s schedule, from Detectron2's own scheduler."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)
    rates = []
    for _ in range(cfg.SOLVER.MAX_ITER):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def replay_sgd(b0, gradient_per_iter, rates, weight_decay, momentum):
    """The final value of parameters starting at ``b0`` under ``torch.optim.SGD`` (the trainer's
    optimizer) with a constant gradient per iteration and ``rates`` as the LR schedule, and
    ``sum_t |b_t|``."""
    param = torch.nn.Parameter(b0.clone())
    optimizer = torch.optim.SGD([param], lr=0.0, momentum=momentum, weight_decay=weight_decay)
    abs_sum = torch.zeros_like(b0)
    for lr in rates:
        optimizer.param_groups[0]["lr"] = lr
        abs_sum += param.detach().abs()
        param.grad = gradient_per_iter.clone()
        optimizer.step()
    return param.detach(), abs_sum


def bias_budget(run_dir, checkpoint="model_final.pth"):
    cfg = get_cfg()
    add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(run_dir, "config.yaml"))
    saved = torch.load(os.path.join(run_dir, checkpoint), map_location="cpu", weights_only=False)
    state = saved.get("model", saved)
    num_classes = cfg.MODEL.RETINANET.NUM_CLASSES
    bias = state["head.cls_score.bias"].double().view(-1, num_classes)  # (A, K)
    statistics = ClassGradientRatio(num_classes)
    statistics.load_state_dict(
        {k: state["efl.statistics." + k] for k in statistics.state_dict()}, strict=True
    )
    pos, neg = statistics.pos_grad.double(), statistics.neg_grad.double()
    groups = training_frequency_groups(cfg.DATASETS.TRAIN, num_classes)
    if groups is None:
        raise SystemExit(f"{run_dir}: the training datasets name no frequency groups")
    prior = cfg.MODEL.RETINANET.PRIOR_PROB
    b0 = torch.full_like(bias, -math.log((1 - prior) / prior))
    decay = cfg.SOLVER.WEIGHT_DECAY_BIAS
    decay = cfg.SOLVER.WEIGHT_DECAY if decay is None else decay
    rates = [lr * cfg.SOLVER.BIAS_LR_FACTOR for lr in learning_rates(cfg)]
    if "iteration" in saved:  # a checkpoint saved after iteration i has seen i + 1 steps
        rates = rates[: saved["iteration"] + 1]
    momentum = cfg.SOLVER.MOMENTUM
    iters = len(rates)
    decay_only, _ = replay_sgd(b0, torch.zeros_like(b0), rates, decay, momentum)
    # D_j spread over the A biases of class j in proportion to their share is unknown; spread
    # evenly (the class's mean bias is what the comparison uses)
    with_d, abs_sum = replay_sgd(
        b0, ((neg - pos) / bias.shape[0] / iters).expand_as(b0), rates, decay, momentum
    )
    hold = decay * abs_sum.sum(0)  # per class
    rows = []
    for key, name in GROUPS:
        idx = [j for j, g in enumerate(groups) if g == key]
        if not idx:
            continue

        def mean(values):
            return float(values[..., idx].mean())

        rows.append(
            {
                "group": name,
                "classes": len(idx),
                "pos": mean(pos),
                "neg": mean(neg),
                "D": mean(neg - pos),
                "g": mean(statistics.ratio),
                "b0": float(b0[0, 0]),
                "bias": mean(bias),
                "decay_only": mean(decay_only),
                "decay_plus_D": mean(with_d),
                "hold": mean(hold),
            }
        )
    kappa = sum(rates) * decay / (1 - momentum)
    return rows, kappa


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (config.yaml, the checkpoint)")
    parser.add_argument("--checkpoint", default="model_final.pth", help="file name in each run")
    args = parser.parse_args()
    print(
        "| run | kappa | group | classes | pos | neg | D = neg - pos | g | bias (b0) | "
        "decay only | decay + D | hold |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        rows, kappa = bias_budget(run, args.checkpoint)
        for r in rows:
            print(
                f"| {os.path.basename(os.path.normpath(run))} | {kappa:.3f} | {r['group']} | "
                f"{r['classes']} | {r['pos']:.3f} | {r['neg']:.3f} | {r['D']:+.3f} | "
                f"{r['g']:.2f} | {r['bias']:.3f} ({r['b0']:.3f}) | {r['decay_only']:.3f} | "
                f"{r['decay_plus_D']:.3f} | {r['hold']:.2f} |"
            )


if __name__ == "__main__":
    main()
