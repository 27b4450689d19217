#!/usr/bin/env python
"""Run a table of trainings (one per row) and print their evaluation as a markdown table.

    python dev/run_experiments.py projects/LibraRCNN/experiments.py \\
        [--only ROW ...] [--seeds K ...] [--jobs N] [--dry-run]

The experiment file defines ``SETTINGS = [(name, config_file, [overrides...]), ...]``, each run over
the seeds ``SEEDS`` (default 1, 2, 3; ``--seeds`` runs some of them only) as the rows
``"<name>, seed <k>"`` with ``SEED <k>``, seed by seed (every setting's first seed, then the
second ...), so that an interrupted table already has paired seeds; ``{seed}`` in an override or a
row option is replaced by the seed. Or it defines the rows themselves,
``ROWS = [(name, config_file, [overrides...]), ...]``. It also defines ``OUTPUT_ROOT``
and optionally ``COLUMNS`` (default AP, AP50, AP75, APr, APc, APf) and ``TASK`` ("bbox"). A row may
carry a fourth element ``{"weights": path}``: it then only evaluates that checkpoint
(``--eval-only``), e.g. an inference option of a model trained by another row; or
``{"reuse": path}``: the checkpoint another table trained with the same config, overrides and
seed, evaluated from it where it exists (else the row trains); or
``{"after": row_name}`` (in ``SETTINGS``: a setting's name, its row of the same seed): it trains
only once that row has finished (e.g. a fine-tune of its
checkpoint), whatever ``--jobs``.
Each row trains with ``projects/train_net.py --resume`` into ``OUTPUT_ROOT/<slug of name>``: a
finished row is not retrained (it is only re-evaluated from its final checkpoint), an interrupted
one continues from its last checkpoint. The table is written to ``OUTPUT_ROOT/results.md`` with the
command that reproduces each row, and every row's evaluation to ``OUTPUT_ROOT/results.json``. Rows
named ``"<setting>, seed <k>"`` are also summarised per setting: mean and standard deviation over
its seeds, and the paired difference from the reference setting (``REFERENCE`` in the spec, default
the first; ``REFERENCES = {setting: its reference}`` for the settings compared with another) over
the seeds both have, marked "within noise" where a paired t-test at 5% does not
tell it from zero. Before it starts it prints the plan: per setting, its seeds, how many rows are
done and the minutes the rest should take (from the wall times of finished rows of the same
setting, else of the same config, kept in ``OUTPUT_ROOT/timings.json``, else the spec's
``MINUTES_PER_ROW``, default 15).
A spec's ``RESULTS`` (e.g. ``"docs/results/libra_rcnn_seeds"``) names the table's committed copy,
rewritten (``.md`` and ``.json``) after every finished row like ``OUTPUT_ROOT/results.*``: on a
machine without the outputs (a new session, another machine), a row recorded there with the
command it would run now is not trained again, and a ``reuse`` row whose checkpoint is gone takes
the result recorded for the training of that checkpoint in any table under ``docs/results``; a
recorded row is trained again only where a row to run needs its checkpoint (``after``, or the
``MODEL.WEIGHTS`` it names).
``--jobs N`` trains N rows at a time, each process with ``cpu_count / N`` threads (on a small CPU
two single-threaded runs finish sooner than two two-threaded runs one after the other);
evaluation-only rows run after the trainings.
"""

import argparse
import concurrent.futures
import json
import math
import os
import re
import runpy
import shlex
import statistics
import subprocess
import sys
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")


def slug(name):
    """A folder name for a row: 'all (BFP + BL1)' -> 'all_bfp_bl1'."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def row_command(config, overrides, output_dir, weights=None):
    if weights:
        return [
            "projects/train_net.py",
            "--config-file",
            config,
            "--eval-only",
            *overrides,
            "MODEL.WEIGHTS",
            weights,
            "OUTPUT_DIR",
            output_dir,
        ]
    return [
        "projects/train_net.py",
        "--config-file",
        config,
        "--resume",
        *overrides,
        "OUTPUT_DIR",
        output_dir,
    ]


def training_waves(todo, after):
    """The training rows of ``todo`` in waves: a row runs in the wave after its ``after`` row (a
    row of another wave, or not to be run, is taken as done)."""
    pending = [row for row in todo if not row[3]]
    waves = []
    while pending:
        names = {row[0] for row in pending}
        wave = [row for row in pending if after.get(row[0]) not in names]
        if not wave:
            raise SystemExit("circular 'after' among rows: " + ", ".join(sorted(names)))
        waves.append(wave)
        pending = [row for row in pending if row not in wave]
    return waves


#: the seeds of a spec's SETTINGS when it does not set SEEDS
DEFAULT_SEEDS = (1, 2, 3)


def seeded_rows(settings, seeds=DEFAULT_SEEDS):
    """The rows of ``settings`` over ``seeds``, seed by seed: ``"<name>, seed <k>"`` with the
    setting's overrides, ``{seed}`` replaced, then ``SEED <k>``; an ``after`` option names the
    setting's row of the same seed."""
    rows = []
    for seed in seeds:
        for name, config, overrides, *options in settings:
            row = [
                "{}, seed {}".format(name, seed),
                config,
                [o.replace("{seed}", str(seed)) for o in overrides] + ["SEED", str(seed)],
            ]
            if options:
                option = {k: v.replace("{seed}", str(seed)) for k, v in options[0].items()}
                if "after" in option:
                    option["after"] = "{}, seed {}".format(option["after"], seed)
                row.append(option)
            rows.append(tuple(row))
    return rows


#: two-sided 95% critical values of Student's t for 1..10 degrees of freedom (then the normal's)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
SEEDED = re.compile(r"^(?P<setting>.+), seed (?P<seed>\d+)$")


def by_setting(names):
    """{setting: {seed: row name}} for the row names of the form ``"<setting>, seed <k>"``, in the
    order the settings first appear."""
    groups = {}
    for name in names:
        m = SEEDED.match(name)
        if m:
            groups.setdefault(m.group("setting"), {})[int(m.group("seed"))] = name
    return groups


def mean_sd(values):
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(values, reference):
    """Mean and sd of ``values[k] - reference[k]`` over the seeds ``k`` both have, and whether the
    difference is within noise (a paired t-test at 5%; always with fewer than 2 pairs)."""
    seeds = sorted(set(values) & set(reference))
    diffs = [values[k] - reference[k] for k in seeds]
    if not diffs:
        return None
    mean, sd = mean_sd(diffs)
    n = len(diffs)
    if n < 2:
        return mean, sd, True
    t = T_975[n - 2] if n - 1 <= len(T_975) else 1.96
    return mean, sd, abs(mean) <= t * sd / math.sqrt(n)


def format_seed_summary(groups, results, columns, task, reference=None, references=None):
    """Per setting: mean +- sd over its seeds; per other setting: the paired difference from
    ``references[setting]`` where given, else from ``reference`` (default: the first setting)."""
    done = {
        s: {k: results[n][task] for k, n in seeds.items() if n in results}
        for s, seeds in groups.items()
    }
    done = {s: v for s, v in done.items() if v}
    if not done:
        return ""
    reference = reference if reference in done else next(iter(done))
    lines = ["| setting | seeds | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    one_seed = False  # a paired row of a single seed was printed
    for setting, per_seed in done.items():
        cells = ["%.1f ± %.1f" % mean_sd([r[c] for r in per_seed.values()]) for c in columns]
        lines.append("| {} | {} | {} |".format(setting, len(per_seed), " | ".join(cells)))
    for setting, per_seed in done.items():
        ref = (references or {}).get(setting, reference)
        if setting == ref or ref not in done:
            continue
        pairs = len(set(per_seed) & set(done[ref]))
        cells = []
        for c in columns:
            diff = paired_difference(
                {k: r[c] for k, r in per_seed.items()},
                {k: r[c] for k, r in done[ref].items()},
            )
            if diff is None:  # no seed finished in both yet
                cells.append("-")
            elif pairs == 1:  # no spread to test the difference against
                cells.append("%+.1f (one seed)" % diff[0])
                one_seed = True
            else:
                cells.append("%+.1f ± %.1f%s" % (diff[0], diff[1], " (noise)" if diff[2] else ""))
        lines.append(
            "| {} - {} (paired) | {} | {} |".format(setting, ref, pairs, " | ".join(cells))
        )
    legend = "(noise): within noise, a paired t-test at 5% cannot tell the difference from zero."
    if one_seed:
        legend += " (one seed): a single pair, which cannot tell it either."
    return "\n".join(lines) + "\n\n" + legend


def load_timings(out_root):
    path = os.path.join(REPO_ROOT, out_root, "timings.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def save_timing(out_root, config, seconds, setting=None):
    """Append one finished row's wall time (seconds) under its config file, and under
    ``"setting: <name>"`` too when given (rows of one config can differ in cost by their
    overrides)."""
    timings = load_timings(out_root)
    timings.setdefault(config, []).append(round(seconds, 1))
    if setting is not None:
        timings.setdefault("setting: " + setting, []).append(round(seconds, 1))
    os.makedirs(os.path.join(REPO_ROOT, out_root), exist_ok=True)
    with open(os.path.join(REPO_ROOT, out_root, "timings.json"), "w") as f:
        json.dump(timings, f, indent=1)


#: the plan's estimate for a row whose config has no measured wall time (a spec may set its own)
DEFAULT_MINUTES_PER_ROW = 15.0
#: the plan's estimate for an evaluation-only row (the tiny val set on CPU)
EVAL_MINUTES = 1.0


def evaluated_weights(option):
    """The checkpoint a row with this option only evaluates: its ``weights``, or its ``reuse``
    checkpoint where that exists; None for a row that trains."""
    reuse = option.get("reuse")
    if reuse and os.path.isfile(os.path.join(REPO_ROOT, reuse)):
        return reuse
    return option.get("weights")


#: where the committed copies of the tables live (a spec's ``RESULTS`` names one, without extension)
RECORDED_DIR = "docs/results"
#: a row's line under "Commands:" in a table's markdown, with an optional note after the command
COMMAND_LINE = re.compile(r"^- (?P<name>.+?): `(?P<command>[^`]+)`")


def read_recorded(prefix):
    """{row name: (command, result)} of a committed table: the commands listed in ``prefix.md``
    and the results in ``prefix.json`` (paths relative to the repository); {} where absent."""
    md, js = (os.path.join(REPO_ROOT, prefix + ext) for ext in (".md", ".json"))
    if not (os.path.isfile(md) and os.path.isfile(js)):
        return {}
    with open(js) as f:
        results = json.load(f)
    recorded = {}
    with open(md) as f:
        for line in f:
            m = COMMAND_LINE.match(line)
            if m and m.group("name") in results:
                recorded[m.group("name")] = (m.group("command"), results[m.group("name")])
    return recorded


def recorded_trainings(directory=RECORDED_DIR):
    """{output folder: (table, result)} of every training row (``--resume``) recorded in the
    committed tables under ``directory``: what a ``reuse`` row's checkpoint evaluated to when it
    was trained, for a machine that no longer has the checkpoint."""
    found = {}
    root = os.path.join(REPO_ROOT, directory)
    for md in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if not md.endswith(".md"):
            continue
        table = os.path.join(directory, md[: -len(".md")])
        for command, result in read_recorded(table).values():
            words = shlex.split(command)
            if "--resume" in words and "OUTPUT_DIR" in words[:-1]:
                found[os.path.normpath(words[words.index("OUTPUT_DIR") + 1])] = (table, result)
    return found


def checkpoint_sources(cmd, after, outputs):
    """The rows whose checkpoint a row's command needs: its ``after`` row and the row whose
    output folder holds the ``MODEL.WEIGHTS`` it names (``outputs``: {folder: row})."""
    sources = {after} if after else set()
    for i, word in enumerate(cmd[:-1]):
        if word == "MODEL.WEIGHTS":
            folder = outputs.get(os.path.normpath(os.path.dirname(cmd[i + 1])))
            if folder:
                sources.add(folder)
    return sources


def makespan(minutes, jobs):
    """Minutes until rows of these durations, taken in order by ``jobs`` workers (each starts the
    next row when it is free, as the runner's pool does), have all finished."""
    workers = [0.0] * max(1, jobs)
    for m in minutes:
        workers[workers.index(min(workers))] += m
    return max(workers)


def format_plan(rows, done, timings, jobs, default_minutes=DEFAULT_MINUTES_PER_ROW):
    """The plan printed before a run: per setting (a row without seeds is its own setting) its
    seeds, rows done and the estimated minutes of the rest at ``jobs`` rows at a time."""
    settings, row_minutes = {}, []
    for name, config, _, *options in rows:
        m = SEEDED.match(name)
        setting, seed = (m.group("setting"), int(m.group("seed"))) if m else (name, None)
        entry = settings.setdefault(setting, {"seeds": [], "done": 0, "todo": 0, "minutes": 0.0})
        if seed is not None:
            entry["seeds"].append(seed)
        if name in done:
            entry["done"] += 1
        else:
            entry["todo"] += 1
            past = timings.get("setting: " + setting) or timings.get(config)
            if options and evaluated_weights(options[0]):
                row_minutes.append(EVAL_MINUTES)
            else:
                row_minutes.append(statistics.mean(past) / 60.0 if past else default_minutes)
            entry["minutes"] += row_minutes[-1]
    lines = ["| setting | seeds | done | to run | minutes to run |", "|---|---|---|---|---|"]
    for setting, e in settings.items():
        lines.append(
            "| {} | {} | {} | {} | {:.0f} |".format(
                setting, ",".join(map(str, e["seeds"])) or "-", e["done"], e["todo"], e["minutes"]
            )
        )
    lines.append(
        "\nPlan: {} settings, {} rows, {} to run, about {:.0f} min with {} job(s) at a time "
        "(a setting's minutes add up its rows' wall times, each measured at that many "
        "jobs).".format(
            len(settings), len(rows), len(row_minutes), makespan(row_minutes, jobs), jobs
        )
    )
    return "\n".join(lines)


def format_table(rows, results, columns, task):
    lines = ["| row | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, *_ in rows:
        res = results.get(name)
        cells = ["%.1f" % res[task][c] if res else "-" for c in columns]
        lines.append("| {} | {} |".format(name, " | ".join(cells)))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--only", nargs="*", default=None, help="row names to run")
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=None, help="of a spec's SETTINGS: these seeds only"
    )
    parser.add_argument("--jobs", type=int, default=1, help="rows trained at a time")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    spec = runpy.run_path(args.spec)
    if "SETTINGS" in spec:
        seeds = spec.get("SEEDS", DEFAULT_SEEDS)
        rows = seeded_rows(spec["SETTINGS"], seeds)
        if args.seeds is not None:
            unknown = sorted(set(args.seeds) - set(seeds))
            if unknown:
                raise SystemExit("--seeds {}: not among the spec's seeds {}".format(unknown, seeds))
            # the table keeps every seed's finished rows; only these seeds are run
            run_only = set(r[0] for r in seeded_rows(spec["SETTINGS"], args.seeds))
            args.only = (
                sorted(run_only) if args.only is None else [n for n in args.only if n in run_only]
            )
    elif args.seeds is not None:
        raise SystemExit("--seeds needs a spec with SETTINGS (this one lists ROWS)")
    else:
        rows = spec["ROWS"]
    out_root = spec["OUTPUT_ROOT"]
    columns, task = spec.get("COLUMNS", DEFAULT_COLUMNS), spec.get("TASK", "bbox")

    results, commands, todo, after, configs, outputs = {}, {}, [], {}, {}, {}
    finished = set()
    # rows finished on another machine: their results in the committed table (RESULTS), kept
    # where the command that made them is this row's command
    recorded_table = spec.get("RESULTS")
    recorded = read_recorded(recorded_table) if recorded_table else {}
    trained_elsewhere = None  # recorded_trainings(), read when a reuse row needs it
    notes = {}  # row -> where its result was recorded, for the table's command list
    for name, config, overrides, *options in rows:
        configs[name] = config
        out = os.path.join(out_root, slug(name))
        outputs[os.path.normpath(out)] = name
        option = options[0] if options else {}
        weights = evaluated_weights(option)
        after[name] = option.get("after")
        cmd = row_command(config, overrides, out, weights)
        commands[name] = "python " + " ".join(shlex.quote(c) for c in cmd)
        # done: a training row has its final checkpoint; an evaluation row its results
        marker = "eval_results.json" if weights else "model_final.pth"
        if os.path.exists(os.path.join(REPO_ROOT, out, marker)):
            finished.add(name)
            # until it is evaluated again, the table keeps its last evaluation
            last = os.path.join(REPO_ROOT, out, "eval_results.json")
            if os.path.exists(last):
                with open(last) as f:
                    results[name] = json.load(f)
            elif name in recorded and recorded[name][0] == commands[name]:
                results[name] = recorded[name][1]
        elif name in recorded and recorded[name][0] in (
            commands[name],
            # a reuse row recorded as the evaluation of a checkpoint this machine lacks
            "python "
            + " ".join(
                shlex.quote(c)
                for c in row_command(config, overrides, out, option.get("reuse") or weights)
            ),
        ):
            commands[name], results[name] = recorded[name]
            notes[name] = "recorded in " + recorded_table
            continue
        elif option.get("reuse") and not weights:
            if trained_elsewhere is None:
                trained_elsewhere = recorded_trainings()
            source = os.path.normpath(os.path.dirname(option["reuse"]))
            if source in trained_elsewhere:
                table, results[name] = trained_elsewhere[source]
                commands[name] = "python " + " ".join(
                    shlex.quote(c) for c in row_command(config, overrides, out, option["reuse"])
                )
                notes[name] = "the final evaluation of {} recorded in {}".format(source, table)
                continue
        if args.only is not None and name not in args.only:
            done = os.path.join(REPO_ROOT, out, "eval_results.json")
            if os.path.exists(done):  # keep earlier results in the table
                with open(done) as f:
                    results[name] = json.load(f)
            continue
        todo.append((name, cmd, out, weights is not None))
    # a recorded row whose checkpoint a row to run needs (its "after" row, or the row that
    # trained the weights it evaluates or starts from) is trained again on this machine
    while True:
        needed = {
            source
            for name, cmd, *_ in todo
            for source in checkpoint_sources(cmd, after[name], outputs)
            if source in notes and not notes[source].startswith("the final evaluation")
        }
        if not needed:
            break
        for name in needed:
            del notes[name], results[name]
            row = next(r for r in rows if r[0] == name)
            out = os.path.join(out_root, slug(name))
            cmd = row_command(row[1], row[2], out)
            commands[name] = "python " + " ".join(shlex.quote(c) for c in cmd)
            todo.append((name, cmd, out, False))

    print(
        format_plan(
            [r for r in rows if args.only is None or r[0] in args.only or r[0] in notes],
            finished | set(notes),
            load_timings(out_root),
            args.jobs,
            spec.get("MINUTES_PER_ROW", DEFAULT_MINUTES_PER_ROW),
        ),
        flush=True,
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.jobs)))

    lock = threading.Lock()

    def write_tables():
        """The table so far, written to OUTPUT_ROOT and to the committed copy (RESULTS) after
        every finished row, so that an interrupted run, or one on a machine that is gone, keeps
        what finished."""
        with lock:
            table = format_table(rows, results, columns, task)
            summary = format_seed_summary(
                by_setting([r[0] for r in rows]),
                results,
                columns,
                task,
                spec.get("REFERENCE"),
                spec.get("REFERENCES"),
            )
            if summary:
                table += "\n\nOver seeds:\n\n" + summary
            if args.dry_run:
                return table
            for prefix in [os.path.join(out_root, "results")] + (
                [recorded_table] if recorded_table else []
            ):
                os.makedirs(os.path.dirname(os.path.join(REPO_ROOT, prefix)), exist_ok=True)
                with open(os.path.join(REPO_ROOT, prefix + ".md"), "w") as f:
                    f.write(table + "\n\nCommands:\n\n")
                    for name, *_ in rows:
                        note = " ({})".format(notes[name]) if name in notes else ""
                        f.write("- {}: `{}`{}\n".format(name, commands[name], note))
                with open(os.path.join(REPO_ROOT, prefix + ".json"), "w") as f:
                    json.dump(
                        {name: results[name] for name, *_ in rows if name in results}, f, indent=1
                    )
            return table

    def run_row(name, cmd, out):
        t0 = time.time()
        log_path = os.path.join(REPO_ROOT, out + ".log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "w") as log:
            rc = subprocess.call(
                [sys.executable, *cmd], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        if rc != 0:
            print("== {}: FAILED (exit {}), see {}".format(name, rc, log_path), flush=True)
            return
        with open(os.path.join(REPO_ROOT, out, "eval_results.json")) as f, lock:
            results[name] = json.load(f)
        if name not in finished:  # a re-evaluation is not a training's time
            m = SEEDED.match(name)
            save_timing(out_root, configs[name], time.time() - t0, m and m.group("setting"))
        print(
            "== {}: done in {:.0f} s: ".format(name, time.time() - t0)
            + ", ".join("%s %.1f" % (c, results[name][task][c]) for c in columns),
            flush=True,
        )
        write_tables()

    # Waves: trainings whose "after" rows are done, then the next ones, then the evaluations
    # (which may need a checkpoint trained by another row).
    for wave in training_waves(todo, after) + [[row for row in todo if row[3]]]:
        batch = [(n, c, o) for n, c, o, _ in wave]
        for name, cmd, _ in batch:
            print("$ " + commands[name], flush=True)
        if args.dry_run:
            continue
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda row: run_row(*row), batch))

    table = write_tables()
    print("\n" + table)


if __name__ == "__main__":
    main()
