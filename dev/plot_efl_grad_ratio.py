#!/usr/bin/env python
"""EFL's accumulated gradient ratio g_j over training, per frequency group, from the runs'
``metrics.json`` (``efl/grad_ratio/{r,c,f}``, logged by every EFL model): the mechanism behind
EFL's per-class focusing, which acts only while g_j of a group stays below 1.

    python dev/plot_efl_grad_ratio.py --run LABEL output/run1 [--run LABEL2 output/run2 ...] \
        --output docs/efl/grad_ratio.png

Prints, per run and group, the last g, its mean over the logged iterations, the share of them
with g below 0.9, and the mean focusing factor gamma_j = gamma_b + s (1 - g_j) the group trained
with (``efl/gamma/...``). ``--columns`` lays many runs out as a grid.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GROUPS = (("r", "rare", "#d62728"), ("c", "common", "#ff7f0e"), ("f", "frequent", "#1f77b4"))


def read_efl_statistics(run_dir, statistics=("grad_ratio", "gamma")):
    """{statistic: {group: [(iteration, value), ...]}} of ``efl/<statistic>/<group>``, read in one
    pass over ``run_dir/metrics.json`` (one JSON object per line)."""
    series = {s: {g: [] for g, _, _ in GROUPS} for s in statistics}
    with open(os.path.join(run_dir, "metrics.json")) as f:
        for line in f:
            row = json.loads(line)
            for statistic, groups in series.items():
                for g, points in groups.items():
                    key = "efl/{}/{}".format(statistic, g)
                    if key in row:
                        points.append((row["iteration"], row[key]))
    return series


def below_share(points, threshold=0.9):
    return sum(v < threshold for _, v in points) / len(points) if points else float("nan")


def mean_value(points):
    return sum(v for _, v in points) / len(points) if points else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", nargs=2, action="append", metavar=("LABEL", "DIR"), required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--columns", type=int, default=0, help="panels per row (all in one row: 0)")
    args = parser.parse_args()
    columns = args.columns or len(args.run)
    rows = -(-len(args.run) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False, sharey=True
    )
    print(
        "| run | group | last g | mean g | share of logged iterations with g < 0.9 | mean gamma |"
    )
    print("|---|---|---|---|---|---|")
    for ax in axes.flat[len(args.run) :]:
        ax.set_visible(False)
    for ax, (label, run_dir) in zip(axes.flat, args.run):
        statistics = read_efl_statistics(run_dir)
        series, gamma = statistics["grad_ratio"], statistics["gamma"]
        for g, name, color in GROUPS:
            if series[g]:
                ax.plot(*zip(*series[g]), color=color, label=name)
                print(
                    "| {} | {} | {:.3f} | {:.3f} | {:.0%} | {:.2f} |".format(
                        label,
                        name,
                        series[g][-1][1],
                        mean_value(series[g]),
                        below_share(series[g]),
                        mean_value(gamma[g]),
                    )
                )
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("iteration")
        ax.set_ylabel("g (mean over the group's classes)")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print("wrote", args.output)


if __name__ == "__main__":
    main()
