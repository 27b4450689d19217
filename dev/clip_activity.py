#!/usr/bin/env python
"""How hard gradient clipping acted in each run under a folder, from its metrics.json.

    python dev/clip_activity.py output/rga_seeds

Per run: the logging windows in which ``clip/clipped_fraction`` (the window's median, as
Detectron2's JSON writer logs it) was above 0, the last such window's iteration, and the largest
logged ``clip/total_norm`` (whole-model clipping) or ``clip/max_norm`` (per-parameter).
"""

import argparse
import glob
import json
import os


def clip_activity(metrics_path):
    with open(metrics_path) as f:
        rows = [r for r in map(json.loads, f) if "clip/clipped_fraction" in r]
    if not rows:
        return None
    clipped = [r["iteration"] for r in rows if r["clip/clipped_fraction"] > 0]
    norm_key = "clip/total_norm" if "clip/total_norm" in rows[0] else "clip/max_norm"
    return {
        "windows": len(rows),
        "clipped_windows": len(clipped),
        "last_clipped_iter": max(clipped) if clipped else None,
        "largest_norm": max(r[norm_key] for r in rows),
        "norm": norm_key,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root")
    args = parser.parse_args()
    print("| run | windows clipped | last clipped window | largest norm |")
    print("|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(args.root, "*", "metrics.json"))):
        a = clip_activity(path)
        if a is None:
            continue
        print(
            "| {} | {} of {} | {} | {:.1f} ({}) |".format(
                os.path.basename(os.path.dirname(path)),
                a["clipped_windows"],
                a["windows"],
                a["last_clipped_iter"] if a["last_clipped_iter"] is not None else "-",
                a["largest_norm"],
                a["norm"],
            )
        )


if __name__ == "__main__":
    main()
