#!/usr/bin/env python
"""Run a table of trainings (one per row) and print their evaluation as a markdown table.

    python dev/run_experiments.py projects/LibraRCNN/experiments.py [--only ROW ...] [--dry-run]

The experiment file defines ``ROWS = [(name, config_file, [overrides...]), ...]``, ``OUTPUT_ROOT``
and optionally ``COLUMNS`` (default AP, AP50, AP75, APr, APc, APf) and ``TASK`` ("bbox").
Each row trains with ``projects/train_net.py --resume`` into ``OUTPUT_ROOT/<slug of name>``: a finished
row is not retrained (it is only re-evaluated from its final checkpoint), an interrupted one
continues from its last checkpoint. The table is written to ``OUTPUT_ROOT/results.md`` with the
command that reproduces each row.
"""
import argparse
import json
import os
import runpy
import shlex
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")


def slug(name):
    """A folder name for a row: 'all (BFP + BL1)' -> 'all_bfp_bl1'."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def row_command(config, overrides, output_dir):
    return ["projects/train_net.py", "--config-file", config, "--resume", *overrides,
            "OUTPUT_DIR", output_dir]


def format_table(rows, results, columns, task):
    lines = ["| row | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, _, _ in rows:
        res = results.get(name)
        cells = ["%.1f" % res[task][c] if res else "-" for c in columns]
        lines.append("| {} | {} |".format(name, " | ".join(cells)))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--only", nargs="*", default=None, help="row names to run")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    spec = runpy.run_path(args.spec)
    rows, out_root = spec["ROWS"], spec["OUTPUT_ROOT"]
    columns, task = spec.get("COLUMNS", DEFAULT_COLUMNS), spec.get("TASK", "bbox")

    results, commands = {}, {}
    for name, config, overrides in rows:
        out = os.path.join(out_root, slug(name))
        cmd = row_command(config, overrides, out)
        commands[name] = "python " + " ".join(shlex.quote(c) for c in cmd)
        if args.only is not None and name not in args.only:
            continue
        print("\n== {}\n$ {}".format(name, commands[name]), flush=True)
        if args.dry_run:
            continue
        t0 = time.time()
        log_path = os.path.join(REPO_ROOT, out + ".log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "w") as log:
            rc = subprocess.call([sys.executable, *cmd], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        if rc != 0:
            print("   FAILED (exit {}), see {}".format(rc, log_path), flush=True)
            continue
        with open(os.path.join(REPO_ROOT, out, "eval_results.json")) as f:
            results[name] = json.load(f)
        print("   done in {:.0f} s: ".format(time.time() - t0)
              + ", ".join("%s %.1f" % (c, results[name][task][c]) for c in columns), flush=True)

    table = format_table(rows, results, columns, task)
    print("\n" + table)
    if not args.dry_run:
        with open(os.path.join(REPO_ROOT, out_root, "results.md"), "w") as f:
            f.write(table + "\n\nCommands:\n\n")
            for name, _, _ in rows:
                f.write("- {}: `{}`\n".format(name, commands[name]))


if __name__ == "__main__":
    main()
