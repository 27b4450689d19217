#!/usr/bin/env python
"""`make demo`: train a tiny Faster R-CNN on LT-Shapes on CPU, evaluate it, draw its detections,
and reload the checkpoint with --eval-only. Interrupted? Run it again: training resumes from the
last checkpoint (--resume) instead of starting over.

    python dev/demo.py [--config-file CFG] [--output-dir DIR] [--pretrained] [opts ...]

The tiny configs fine-tune the locally pre-trained ResNet-18, which takes about 25 minutes to build
once (`make pretrained`); the demo trains from scratch instead
(``libra_d2.checkpoint.TINY_FROM_SCRATCH``) to stay within a few minutes, unless --pretrained.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from libra_d2.checkpoint.pretrained import TINY_FROM_SCRATCH  # noqa: E402

DEFAULT_CONFIG = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
AP_KEYS = ("AP", "AP50", "AP75", "APr", "APc", "APf")


def step(title, cmd):
    print("\n== {}\n$ {}".format(title, " ".join(cmd)), flush=True)
    t0 = time.time()
    subprocess.check_call(cmd, cwd=REPO_ROOT)
    return time.time() - t0


def ap_table(rows):
    header = "| run | " + " | ".join(AP_KEYS) + " |"
    lines = [header, "|" + "---|" * (len(AP_KEYS) + 1)]
    for name, bbox in rows:
        lines.append("| {} | ".format(name) + " | ".join("%.1f" % bbox[k] for k in AP_KEYS) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--output-dir", default="output/demo")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="fine-tune the pre-trained ResNet-18 (make pretrained) instead of from scratch",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    py = sys.executable
    out = args.output_dir
    # the recipe first: the weights to evaluate and the user's options come after it
    recipe = [] if args.pretrained else TINY_FROM_SCRATCH
    t_train = step(
        "train + evaluate (CPU)",
        [
            py,
            "projects/train_net.py",
            "--config-file",
            args.config_file,
            "--resume",
            *recipe,
            "OUTPUT_DIR",
            out,
            *args.opts,
        ],
    )
    with open(os.path.join(REPO_ROOT, out, "eval_results.json")) as f:
        trained = json.load(f)["bbox"]
    picture = os.path.join(out, "detections.png")
    step(
        "draw detections",
        [
            py,
            "dev/visualize_detections.py",
            "--config-file",
            args.config_file,
            "--weights",
            os.path.join(out, "model_final.pth"),
            "--output",
            picture,
            *recipe,
            *args.opts,
        ],
    )
    reload_dir = os.path.join(out, "eval_only")
    t_eval = step(
        "reload the checkpoint with --eval-only",
        [
            py,
            "projects/train_net.py",
            "--config-file",
            args.config_file,
            "--eval-only",
            *recipe,
            "MODEL.WEIGHTS",
            os.path.join(out, "model_final.pth"),
            "OUTPUT_DIR",
            reload_dir,
            *args.opts,
        ],
    )
    with open(os.path.join(REPO_ROOT, reload_dir, "eval_results.json")) as f:
        reloaded = json.load(f)["bbox"]

    print("\n== LT-Shapes val, box AP (LVIS metrics)")
    print(ap_table([("trained", trained), ("reloaded (--eval-only)", reloaded)]))
    same = all(abs(trained[k] - reloaded[k]) < 1e-9 for k in AP_KEYS)
    print("\noutput folder: {}".format(out))
    print(
        "  model_final.pth, metrics.json, events.out.tfevents.* (tensorboard --logdir {}),".format(
            out
        )
    )
    print("  eval_results.json, detections.png, log.txt")
    print("train + eval: {:.0f} s, reload + eval: {:.0f} s".format(t_train, t_eval))
    if not same:
        sys.exit("the reloaded checkpoint does not reproduce the evaluation")
    if not trained["AP"] > 0:
        sys.exit("AP is zero: the demo did not learn")


if __name__ == "__main__":
    main()
