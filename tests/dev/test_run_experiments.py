"""dev/run_experiments.py: row ordering ("after"), output folders, and the dry run."""

import json
import runpy
import subprocess
import sys

import pytest

RUN_EXPERIMENTS = runpy.run_path("dev/run_experiments.py")
training_waves, slug = RUN_EXPERIMENTS["training_waves"], RUN_EXPERIMENTS["slug"]


def _row(name, eval_only=False):
    return (name, ["cmd"], "out/" + name, eval_only)


def test_waves_follow_after():
    todo = [_row("stage 1"), _row("ft a"), _row("ft b"), _row("other"), _row("eval", True)]
    after = {"ft a": "stage 1", "ft b": "stage 1", "eval": "stage 1"}
    waves = [[r[0] for r in w] for w in training_waves(todo, after)]
    assert waves == [["stage 1", "other"], ["ft a", "ft b"]]  # evaluations are not trainings


def test_after_a_row_not_run_is_done_and_chains_are_ordered():
    todo = [_row("c"), _row("b"), _row("d")]
    after = {"c": "b", "b": "a", "d": "c"}  # "a" finished earlier / not selected
    assert [[r[0] for r in w] for w in training_waves(todo, after)] == [["b"], ["c"], ["d"]]


def test_circular_after_is_an_error():
    with pytest.raises(SystemExit, match="circular"):
        training_waves([_row("a"), _row("b")], {"a": "b", "b": "a"})


def test_slug():
    assert slug("EBL + MFS (LOCE)") == "ebl_mfs_loce"


def _dry_run(spec, *args):
    proc = subprocess.run(
        [sys.executable, "dev/run_experiments.py", spec, "--jobs", "2", "--dry-run", *args],
        capture_output=True,
        text=True,
    )
    return proc, [line for line in proc.stdout.splitlines() if line.startswith("$ ")]


def _fresh(spec, tmp_path):
    """A project's spec as a machine without its outputs and its committed table would run it:
    the same rows, with OUTPUT_ROOT in ``tmp_path`` and no RESULTS."""
    wrapper = tmp_path / "spec.py"
    wrapper.write_text(
        "import runpy\nglobals().update(runpy.run_path(%r))\nOUTPUT_ROOT = %r\nRESULTS = None\n"
        % (spec, str(tmp_path / "o"))
    )
    return str(wrapper)


def test_dry_run_prints_stage_1_before_its_fine_tunes(tmp_path):
    proc, commands = _dry_run(_fresh("projects/LOCE/experiments_from_scratch.py", tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(commands) == 5 and "stage_1_baseline" in commands[0].split("OUTPUT_DIR")[-1]


def test_seeded_spec_runs_each_seeds_stage_1_before_its_fine_tunes(tmp_path):
    spec = _fresh("projects/LOCE/experiments.py", tmp_path)
    proc, commands = _dry_run(spec)
    assert proc.returncode == 0, proc.stderr
    outputs = [c.split("OUTPUT_DIR ")[-1] for c in commands]
    assert len(outputs) == 15 and all("stage_1_baseline_seed_" in o for o in outputs[:3])
    # each fine-tune starts from its own seed's stage-1 model, with that seed
    ebl_2 = commands[outputs.index(str(tmp_path / "o" / "ebl_seed_2"))]
    assert "stage_1_baseline_seed_2/model_final.pth" in ebl_2 and ebl_2.endswith(
        "SEED 2 OUTPUT_DIR " + str(tmp_path / "o" / "ebl_seed_2")
    )
    proc, commands = _dry_run(spec, "--seeds", "3")
    assert len(commands) == 5 and all(c.endswith("_seed_3") for c in commands)
    proc, _ = _dry_run(spec, "--seeds", "7")
    assert proc.returncode != 0 and "not among the spec's seeds" in proc.stderr
    proc, _ = _dry_run(
        _fresh("projects/LOCE/experiments_from_scratch.py", tmp_path), "--seeds", "1"
    )
    assert proc.returncode != 0 and "needs a spec with SETTINGS" in proc.stderr


def test_seeded_rows_go_seed_by_seed_and_fill_in_the_seed():
    settings = [
        ("a", "a.yaml", ["W", "out/{seed}.pth"]),
        ("b", "b.yaml", [], {"after": "a", "weights": "w{seed}"}),
    ]
    rows = RUN_EXPERIMENTS["seeded_rows"](settings, (1, 2))
    assert [r[0] for r in rows] == ["a, seed 1", "b, seed 1", "a, seed 2", "b, seed 2"]
    assert rows[2][2] == ["W", "out/2.pth", "SEED", "2"]
    assert rows[3][3] == {"after": "a, seed 2", "weights": "w2"}
    assert settings[1][3] == {"after": "a", "weights": "w{seed}"}  # the spec is left alone


def test_reuse_evaluates_a_trained_checkpoint_else_trains(tmp_path):
    spec = tmp_path / "spec.py"
    ckpt = tmp_path / "other_table" / "seed_1" / "model_final.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    spec.write_text(
        "SETTINGS = [('base', 'a.yaml', [], {'reuse': %r})]\n"
        "SEEDS = (1, 2)\nOUTPUT_ROOT = %r\n"
        % (str(tmp_path / "other_table" / "seed_{seed}" / "model_final.pth"), str(tmp_path / "o"))
    )
    proc, commands = _dry_run(str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "| base | 1,2 | 0 | 2 | 16 |" in proc.stdout  # 1 min to evaluate, 15 to train
    seed_1, seed_2 = sorted(commands, key=lambda c: c.endswith("seed_2"))
    assert "--eval-only" in seed_1 and "MODEL.WEIGHTS " + str(ckpt) in seed_1
    assert "--resume" in seed_2 and "--eval-only" not in seed_2


def test_seed_summary_groups_settings_and_pairs_seeds():
    names = [
        "base, seed 1",
        "new, seed 1",
        "base, seed 2",
        "new, seed 2",
        "base, seed 3",
        "new, seed 3",
        "single row",
    ]
    groups = RUN_EXPERIMENTS["by_setting"](names)
    assert list(groups) == ["base", "new"] and groups["new"] == {
        1: "new, seed 1",
        2: "new, seed 2",
        3: "new, seed 3",
    }
    ap = {"base": (10.0, 12.0, 11.0), "new": (12.0, 14.5, 12.5)}
    results = {
        "{}, seed {}".format(s, k + 1): {"bbox": {"AP": v[k]}}
        for s, v in ap.items()
        for k in range(3)
    }
    table = RUN_EXPERIMENTS["format_seed_summary"](groups, results, ["AP"], "bbox")
    assert "| base | 3 | 11.0 ± 1.0 |" in table
    # paired differences 2.0, 2.5, 1.5: mean 2.0, sd 0.5, t = 6.9 > 4.30: not noise
    assert "| new - base (paired) | 3 | +2.0 ± 0.5 |" in table


def test_seed_summary_compares_a_setting_with_its_own_reference():
    """REFERENCES: a setting is paired with the setting named for it, the others with REFERENCE."""
    names = ["{}, seed {}".format(s, k) for k in (1, 2) for s in ("base", "base2", "new", "other")]
    ap = {"base": 10.0, "base2": 20.0, "new": 23.0, "other": 11.0}
    results = {n: {"bbox": {"AP": ap[n.split(",")[0]] + int(n[-1])}} for n in names}
    groups = RUN_EXPERIMENTS["by_setting"](names)
    table = RUN_EXPERIMENTS["format_seed_summary"](
        groups, results, ["AP"], "bbox", "base", {"new": "base2"}
    )
    assert "| new - base2 (paired) | 2 | +3.0 ± 0.0 |" in table
    assert "| other - base (paired) | 2 | +1.0 ± 0.0 |" in table
    assert "new - base " not in table and "base2 - base (paired)" in table


def test_paired_difference_within_noise():
    paired = RUN_EXPERIMENTS["paired_difference"]
    assert paired({1: 11.0, 2: 10.0, 3: 12.5}, {1: 10.0, 2: 11.0, 3: 11.5})[2]  # +1, -1, +1
    assert not paired({1: 11.0, 2: 11.1, 3: 11.2}, {1: 10.0, 2: 10.0, 3: 10.0})[2]
    assert paired({1: 5.0}, {1: 1.0}) == (4.0, 0.0, True)  # one pair cannot tell
    assert paired({1: 5.0}, {2: 1.0}) is None


def test_seed_summary_with_no_seed_in_common_yet():
    """Partly finished runs: a setting whose seeds the reference has not finished gets "-"."""
    groups = RUN_EXPERIMENTS["by_setting"](["base, seed 1", "new, seed 2"])
    results = {"base, seed 1": {"bbox": {"AP": 10.0}}, "new, seed 2": {"bbox": {"AP": 12.0}}}
    table = RUN_EXPERIMENTS["format_seed_summary"](groups, results, ["AP"], "bbox")
    assert "| new - base (paired) | 0 | - |" in table


def test_seed_summary_of_one_paired_seed_says_so():
    """One pair has no spread: the difference is printed as one seed's, not as "within noise"."""
    groups = RUN_EXPERIMENTS["by_setting"](["base, seed 1", "new, seed 1"])
    results = {"base, seed 1": {"bbox": {"AP": 10.0}}, "new, seed 1": {"bbox": {"AP": 12.0}}}
    table = RUN_EXPERIMENTS["format_seed_summary"](groups, results, ["AP"], "bbox")
    assert "| new - base (paired) | 1 | +2.0 (one seed) |" in table
    assert "(one seed): a single pair" in table
    two = ["base, seed 1", "new, seed 1", "base, seed 2", "new, seed 2"]
    results = {n: {"bbox": {"AP": 10.0 + len(n) + int(n[-1])}} for n in two}
    table = RUN_EXPERIMENTS["format_seed_summary"](
        RUN_EXPERIMENTS["by_setting"](two), results, ["AP"], "bbox"
    )
    assert "| new - base (paired) | 2 |" in table and "one seed" not in table


def test_plan_counts_done_rows_and_estimates_from_timings():
    rows = [
        ("base, seed 1", "a.yaml", []),
        ("base, seed 2", "a.yaml", []),
        ("new, seed 1", "b.yaml", []),
        ("new, seed 2", "b.yaml", []),
        ("single", "c.yaml", []),
    ]
    timings = {"a.yaml": [600.0, 840.0]}  # 12 min on average; b and c: the default
    plan = RUN_EXPERIMENTS["format_plan"](rows, {"base, seed 1"}, timings, 2, 10.0)
    assert "| base | 1,2 | 1 | 1 | 12 |" in plan
    assert "| new | 1,2 | 0 | 2 | 20 |" in plan
    assert "| single | - | 0 | 1 | 10 |" in plan
    # two workers take 12, 10, 10, 10 in order: 12 + 10 and 10 + 10
    assert "3 settings, 5 rows, 4 to run, about 22 min with 2 job(s)" in plan
    # a setting's own times come before its config's
    timings["setting: base"] = [300.0]
    plan = RUN_EXPERIMENTS["format_plan"](rows, {"base, seed 1"}, timings, 2, 10.0)
    assert "| base | 1,2 | 1 | 1 | 5 |" in plan


def test_makespan_counts_the_rows_a_worker_runs_one_after_another():
    makespan = RUN_EXPERIMENTS["makespan"]
    assert makespan([16.0, 16.0, 16.0], 2) == 32.0  # the third row runs alone, after the first
    assert makespan([16.0, 16.0, 16.0], 1) == 48.0
    assert makespan([], 2) == 0.0


def test_timings_accumulate_per_config(tmp_path):
    save, load = RUN_EXPERIMENTS["save_timing"], RUN_EXPERIMENTS["load_timings"]
    out = str(tmp_path / "out")  # absolute: joined to the repository root it stays itself
    assert load(out) == {}
    save(out, "a.yaml", 61.04)
    save(out, "a.yaml", 70.0, "base")
    assert load(out) == {"a.yaml": [61.0, 70.0], "setting: base": [70.0]}


def _record(prefix, rows):
    """A committed table at ``prefix`` (.md, .json) with these (name, command, AP) rows."""
    with open(str(prefix) + ".md", "w") as f:
        f.write("| row | AP |\n\nCommands:\n\n")
        for name, command, _ in rows:
            f.write("- {}: `{}` (a note)\n".format(name, command))
    with open(str(prefix) + ".json", "w") as f:
        json.dump({name: {"bbox": {"AP": ap}} for name, _, ap in rows}, f)


def test_recorded_rows_are_kept_unless_a_row_to_run_needs_their_checkpoint(tmp_path):
    out, recorded = tmp_path / "o", tmp_path / "recorded"
    spec = tmp_path / "spec.py"
    spec.write_text(
        "SETTINGS = [('a', 'a.yaml', []),\n"
        "  ('b', 'b.yaml', ['MODEL.WEIGHTS', %r], {'after': 'a'}),\n"
        "  ('c', 'c.yaml', [])]\n"
        "SEEDS = (1,)\nCOLUMNS = ('AP',)\nOUTPUT_ROOT = %r\nRESULTS = %r\n"
        % (str(out / "a_seed_1" / "model_final.pth"), str(out), str(recorded))
    )
    _, commands = _dry_run(str(spec))
    # the commands as a results.md lists them (a and c train in the first wave, b after a)
    a, b, c = sorted((cmd[2:] for cmd in commands), key=lambda cmd: cmd[-8:])
    _record(recorded, [("a, seed 1", a, 1.0), ("b, seed 1", b, 2.0), ("c, seed 1", c, 3.0)])
    proc, commands = _dry_run(str(spec))
    assert proc.returncode == 0, proc.stderr
    assert commands == [] and "| c, seed 1 | 3.0 |" in proc.stdout
    assert "| a | 1 | 1 | 0 | 0 |" in proc.stdout  # counted as done in the plan
    # b to run needs a's checkpoint, which this machine lacks: a trains again, before b
    _record(recorded, [("a, seed 1", a, 1.0), ("c, seed 1", c, 3.0)])
    _, commands = _dry_run(str(spec))
    assert [cmd[2:] for cmd in commands] == [a, b]  # in two waves
    # a row recorded with another command (the spec changed since) is trained again
    _record(recorded, [("a, seed 1", a, 1.0), ("b, seed 1", b, 2.0), ("c, seed 1", c + " X", 3.0)])
    _, commands = _dry_run(str(spec))
    assert [cmd[2:] for cmd in commands] == [c]


def test_recorded_trainings_map_output_folders_to_results(tmp_path):
    _record(
        tmp_path / "table",
        [
            ("t", "python projects/train_net.py --resume SEED 1 OUTPUT_DIR out/t_seed_1", 5.0),
            ("e", "python projects/train_net.py --eval-only OUTPUT_DIR out/e", 6.0),
        ],
    )
    found = RUN_EXPERIMENTS["recorded_trainings"](str(tmp_path))
    assert found == {"out/t_seed_1": (str(tmp_path / "table"), {"bbox": {"AP": 5.0}})}


def test_a_finished_row_keeps_its_last_evaluation_until_evaluated_again(tmp_path):
    """The table written while a finished row waits for its re-evaluation shows its last one."""
    out = tmp_path / "o"
    spec = tmp_path / "spec.py"
    spec.write_text(
        "SETTINGS = [('a', 'a.yaml', [])]\nSEEDS = (1,)\nCOLUMNS = ('AP',)\nOUTPUT_ROOT = %r\n"
        % str(out)
    )
    (out / "a_seed_1").mkdir(parents=True)
    (out / "a_seed_1" / "model_final.pth").write_bytes(b"")
    proc, commands = _dry_run(str(spec))
    assert "| a, seed 1 | - |" in proc.stdout and len(commands) == 1
    (out / "a_seed_1" / "eval_results.json").write_text(json.dumps({"bbox": {"AP": 4.5}}))
    proc, commands = _dry_run(str(spec))
    assert "| a, seed 1 | 4.5 |" in proc.stdout and len(commands) == 1  # still re-evaluated
