"""SafeCheckpointer: atomic files, finite-only checkpoints, a resume that falls back to the newest
sound checkpoint, and the divergence rule."""

import logging
import math
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from libra_d2.checkpoint import SafeCheckpointer, checkpoint_problem
from libra_d2.engine.divergence import untrusted_after_divergence


class _State:
    """A checkpointable like the trainer: its iteration is saved and restored."""

    def __init__(self, iteration=0):
        self.iteration = iteration

    def state_dict(self):
        return {"iteration": self.iteration}

    def load_state_dict(self, state):
        self.iteration = state["iteration"]


def _model(value=1.0):
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(value)
    m.register_buffer("stat", torch.ones(3))
    return m


def _save(d, name, value, iteration):
    ck = SafeCheckpointer(_model(value), str(d), trainer=_State(iteration))
    ck.save(name, iteration=iteration)  # as Detectron2's PeriodicCheckpointer does
    return d / (name + ".pth")


def test_save_is_atomic_and_tags(tmp_path):
    path = _save(tmp_path, "model_0000001", 1.0, 1)
    assert path.exists() and not (tmp_path / "model_0000001.pth.tmp").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert checkpoint_problem(str(path)) == (None, 1)


def test_a_kill_during_the_write_keeps_the_previous_file(tmp_path):
    """A process killed by SIGKILL while writing leaves the earlier checkpoint and tag intact."""
    good = _save(tmp_path, "model_final", 1.0, 3)
    before = good.read_bytes()
    script = """
import os, signal, sys, torch
from torch import nn
from libra_d2.checkpoint import SafeCheckpointer
real_save = torch.save
def save_then_die(obj, f, *a, **k):
    f.write(b"PK\\x03\\x04 half a zip")  # a partial write, then the kill
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save_then_die
SafeCheckpointer(nn.Linear(2, 2), sys.argv[1]).save("model_final", iteration=4)
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert good.read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert checkpoint_problem(str(good)) == (None, 3)


def test_non_finite_model_is_not_saved_nor_tagged(tmp_path, caplog):
    _save(tmp_path, "model_0000001", 1.0, 1)
    bad = _model(1.0)
    with torch.no_grad():
        bad.stat[1] = float("nan")
    with caplog.at_level(logging.ERROR):
        SafeCheckpointer(bad, str(tmp_path)).save("model_0000002", iteration=2)
    assert not (tmp_path / "model_0000002.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert "Not saving checkpoint 'model_0000002'" in caplog.text and "stat" in caplog.text


def _resume(d):
    model, state = _model(0.0), _State()
    SafeCheckpointer(model, str(d), trainer=state).resume_or_load("", resume=True)
    return model, state


@pytest.mark.parametrize("damage", ["truncated", "not_a_checkpoint", "non_finite", "missing"])
def test_resume_falls_back_to_newest_sound_checkpoint(tmp_path, caplog, damage):
    _save(tmp_path, "model_0000001", 1.0, 1)
    _save(tmp_path, "model_0000003", 3.0, 3)
    newest = _save(tmp_path, "model_0000005", 5.0, 5)
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "not_a_checkpoint":
        newest.write_text("not a checkpoint")
    elif damage == "non_finite":
        torch.save({"model": {"weight": torch.full((2, 2), float("inf"))}, "iteration": 5}, newest)
    else:
        newest.unlink()
    with caplog.at_level(logging.WARNING):
        model, state = _resume(tmp_path)
    assert state.iteration == 3 and torch.equal(model.weight, torch.full((2, 2), 3.0))
    assert "resuming from {}".format(tmp_path / "model_0000003.pth") in caplog.text
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"


def test_resume_reads_the_chosen_checkpoint_once(tmp_path, monkeypatch):
    """The resume checks the checkpoint it chooses by loading it, and then uses that load: each
    file is read once (a second read of a multi-GB checkpoint costs minutes on slow disks)."""
    _save(tmp_path, "model_0000001", 1.0, 1)
    newest = _save(tmp_path, "model_0000003", 3.0, 3)
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    model, state = _resume(tmp_path)
    assert state.iteration == 3 and torch.equal(model.weight, torch.full((2, 2), 3.0))
    assert reads == [str(newest)]
    # a load of another file afterwards reads it (nothing stale is kept)
    ck = SafeCheckpointer(_model(), str(tmp_path), trainer=_State())
    ck.load(str(tmp_path / "model_0000001.pth"))
    assert reads == [str(newest), str(tmp_path / "model_0000001.pth")]
    assert ck.loaded_model_keys == {"weight", "bias", "stat"}  # what hooks ask instead of reading


@pytest.mark.parametrize("tag", ["", None])
def test_empty_or_missing_tag_resumes_from_the_newest(tmp_path, tag):
    _save(tmp_path, "model_0000001", 1.0, 1)
    _save(tmp_path, "model_final", 9.0, 9)
    if tag is None:
        (tmp_path / "last_checkpoint").unlink()
    else:
        (tmp_path / "last_checkpoint").write_text(tag)
    _, state = _resume(tmp_path)
    assert state.iteration == 9


def test_resume_without_any_sound_checkpoint_names_the_folder(tmp_path):
    bad = _save(tmp_path, "model_0000001", 1.0, 1)
    bad.write_bytes(b"broken")
    with pytest.raises(RuntimeError, match="no checkpoint in .* can be loaded"):
        _resume(tmp_path)


# ---------------------------------------------------------------------------- divergence rule
LOSSES = {t: 2.0 for t in range(0, 30)}


def test_checkpoint_right_before_the_divergence_is_not_trusted():
    assert "no step finished" in untrusted_after_divergence(LOSSES, 29, 30)
    assert untrusted_after_divergence(LOSSES, 28, 30) is None
    assert "at or after" in untrusted_after_divergence(LOSSES, 30, 30)


def test_checkpoint_whose_next_step_exploded_is_not_trusted():
    losses = {**LOSSES, 25: 50.0, 26: 1e4, 27: math.inf}
    assert "was 50, over 10x the median 2" in untrusted_after_divergence(losses, 24, 30)
    assert untrusted_after_divergence(losses, 23, 30) is None  # the blow-up came after step 24
    assert "was inf" in untrusted_after_divergence(losses, 26, 30)
