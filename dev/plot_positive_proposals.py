#!/usr/bin/env python
"""Plot the number of sampled positive proposals per image against the iteration (the RGA/PRM
paper's Fig. 1a) from a run's ``metrics.json``.

Curves: ``roi_head/num_fg_samples`` (every R-CNN training run logs it) and, for Parallel R-CNN
Modules, one per module (``prm/num_fg_samples_h<k>``). With ``--lambda`` (and an RGA run) the
gradient multiplier ``rga/lambda`` is drawn on a second axis.

    python dev/plot_positive_proposals.py \\
        output/lt_shapes/faster_rcnn_R_18_FPN_tiny_rga_prm/metrics.json \\
        [--output docs/positive_proposals.png] [--lambda]

Detectron2 writes ``metrics.json`` every 20 iterations (median over the last 20 values for
smoothed scalars), so the curve has one point per 20 iterations.
"""

import argparse
import json
import os
import re

FG_KEY = "roi_head/num_fg_samples"
HEAD_KEY = re.compile(r"^prm/num_fg_samples_h(\d+)$")
LAMBDA_KEY = "rga/lambda"


def load_series(path):
    """``{key: ([iterations], [values])}`` for the positive counts (and lambda) in ``path``."""
    series = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a partly written last line of a running job
            it = record.get("iteration")
            if it is None:
                continue
            for key, value in record.items():
                if key in (FG_KEY, LAMBDA_KEY) or HEAD_KEY.match(key):
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(it)
                    ys.append(float(value))
    return series


def plot(series, output, title=None, show_lambda=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if FG_KEY not in series and not any(HEAD_KEY.match(k) for k in series):
        raise ValueError("no {} or prm/num_fg_samples_h<k> in the metrics".format(FG_KEY))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    heads = sorted(
        (k for k in series if HEAD_KEY.match(k)), key=lambda k: int(HEAD_KEY.match(k).group(1))
    )
    if heads:
        for key in heads:
            xs, ys = series[key]
            ax.plot(xs, ys, marker=".", label="PRM module {}".format(HEAD_KEY.match(key).group(1)))
    else:
        xs, ys = series[FG_KEY]
        ax.plot(xs, ys, marker=".", label="R-CNN")
    ax.set_xlabel("iteration")
    ax.set_ylabel("sampled positive proposals per image")
    ax.set_title(title or "Positive proposals during training (Fig. 1a)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if show_lambda and LAMBDA_KEY in series:
        ax2 = ax.twinx()
        xs, ys = series[LAMBDA_KEY]
        (line,) = ax2.plot(xs, ys, color="gray", linestyle="--", label="RGA lambda")
        ax2.set_ylabel("RGA lambda")
        handles.append(line)
        labels.append("RGA lambda")
    ax.legend(handles, labels, loc="best")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("metrics", help="a run's metrics.json")
    ap.add_argument("--output", default=None, help="PNG path (default: next to metrics.json)")
    ap.add_argument("--title", default=None)
    ap.add_argument(
        "--lambda", dest="show_lambda", action="store_true", help="also draw rga/lambda"
    )
    args = ap.parse_args()
    output = args.output or os.path.join(os.path.dirname(args.metrics), "positive_proposals.png")
    series = load_series(args.metrics)
    plot(series, output, title=args.title, show_lambda=args.show_lambda)
    for key in sorted(series):
        xs, ys = series[key]
        print(
            "{}: {} points, first {:.1f} (iter {}), last {:.1f} (iter {})".format(
                key, len(xs), ys[0], xs[0], ys[-1], xs[-1]
            )
        )
    print("wrote", output)


if __name__ == "__main__":
    main()
