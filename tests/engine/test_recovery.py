"""Through train_net.py: a truncated final checkpoint and a divergence lose nothing; the user fixes
the config, runs --resume, and the run ends with sound checkpoints, no file edited by hand."""
import pytest
import torch

from conftest import TINY_INPUT

FASTER = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
NO_EVAL = ["DATASETS.TEST", "()"]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_truncated_final_checkpoint_is_written_again_on_resume(run_script, tmp_path):
    out = tmp_path / "run"
    common = ["--config-file", FASTER, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
              "OUTPUT_DIR", str(out), *NO_EVAL, *TINY_INPUT]
    run_script("projects/train_net.py", *common)
    final = out / "model_final.pth"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 3])  # killed mid-write
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    proc = run_script("projects/train_net.py", "--resume", *common)
    assert "resuming from {}".format(out / "model_0000003.pth") in proc.stdout
    assert "does not load" in proc.stdout
    ref, again = _load(out / "model_0000003.pth"), _load(final)
    assert again["iteration"] >= 3 and ref["model"].keys() == again["model"].keys()
    assert all(torch.equal(ref["model"][k], again["model"][k]) for k in ref["model"])
    # and the evaluation reload works again
    run_script("projects/train_net.py", "--config-file", FASTER, "--eval-only", "MODEL.WEIGHTS",
               str(final), "OUTPUT_DIR", str(tmp_path / "eval"), *TINY_INPUT)


def test_divergence_then_resume_with_a_fixed_config(run_script, tmp_path):
    """The learning rate jumps 300x at iteration 12 and the loss diverges a few steps later; the
    error names the checkpoint --resume will use, and resuming with a sane schedule finishes."""
    out = tmp_path / "run"
    common = ["--config-file", FASTER, "SOLVER.MAX_ITER", "20", "SOLVER.CHECKPOINT_PERIOD", "4",
              "SOLVER.WARMUP_ITERS", "0", "SOLVER.CLIP_GRADIENTS.ENABLED", "False",
              "SOLVER.STEPS", "(12,)", "OUTPUT_DIR", str(out), *NO_EVAL, *TINY_INPUT]
    proc = run_script("projects/train_net.py", *common, "SOLVER.GAMMA", "300.0", check=False)
    assert proc.returncode != 0
    assert "FloatingPointError" in proc.stdout and "Training diverged at iteration" in proc.stdout
    tagged = (out / "last_checkpoint").read_text()
    assert "`--resume` will continue from {}".format(out / tagged) in proc.stdout
    diverged_at = int(proc.stdout.split("Training diverged at iteration ")[1].split(";")[0])
    assert _load(out / tagged)["iteration"] < diverged_at - 1
    for p in out.glob("*.pth"):  # what is left to resume from is finite
        assert all(torch.isfinite(v).all() for v in _load(p)["model"].values()
                   if v.is_floating_point()), p.name

    proc = run_script("projects/train_net.py", "--resume", *common, "SOLVER.GAMMA", "0.1")
    assert "Loading from {}".format(out / tagged) in proc.stdout
    final = _load(out / "model_final.pth")
    assert final["iteration"] == 19
    assert all(torch.isfinite(v).all() for v in final["model"].values() if v.is_floating_point())
    assert final["trainer"]["_trainer"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        0.002)  # the fixed schedule's rate, not the one saved by the diverged run
