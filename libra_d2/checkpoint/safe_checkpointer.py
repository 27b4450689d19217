"""``SafeCheckpointer``: Detectron2's ``DetectionCheckpointer`` that loses nothing when a run is
killed or diverges.

* **Atomic files.** A checkpoint is written to ``<name>.pth.tmp`` and renamed over ``<name>.pth``
  only once complete (``last_checkpoint`` likewise): a kill leaves the previous file intact, never
  a truncated one under the real name.
* **Only finite checkpoints.** A checkpoint whose model state (weights, buffers, the methods'
  statistics) holds a NaN or an infinity is not written and not tagged.
* **Resume falls back.** ``--resume`` loads the tagged checkpoint; when it is missing, truncated,
  unreadable or not finite, it loads the newest checkpoint beside it that is sound, says so, and
  tags it. An empty or missing ``last_checkpoint`` with checkpoints beside it resumes from them.
  A complete run whose final checkpoint is broken gets it written again (:meth:`ensure_final`).
* **Divergence leaves a resumable run.** :meth:`prepare_resume_after_divergence` tags the newest
  sound checkpoint that the training after it vouches for (``libra_d2.engine.divergence``): a
  checkpoint from the steps just before a divergence can hold finite but already ruined weights.

Checkpoints are named as Detectron2 names them (``model_0004999.pth`` for iteration 4999,
``model_final.pth``); the iteration of a file is read from the file itself (its ``iteration``).
"""

import logging
import math
import os
import re
from typing import List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

__all__ = ["SafeCheckpointer", "checkpoint_problem", "non_finite_entries", "read_checked"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"
_PERIODIC_NAME = re.compile(r"_(\d+)\.pth$")


def non_finite_entries(state_dict) -> List[str]:
    """Names of the floating-point tensors of ``state_dict`` that hold a NaN or an infinity."""
    return [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


def checkpoint_problem(path: str) -> Tuple[Optional[str], Optional[int]]:
    """``(problem, iteration)`` of a checkpoint file: ``problem`` is None when it loads and its
    model state is finite, else a short reason; ``iteration`` is the one it stores (or None)."""
    return read_checked(path)[:2]


def read_checked(path: str) -> Tuple[Optional[str], Optional[int], Optional[dict]]:
    """:func:`checkpoint_problem` and, when there is no problem, the loaded checkpoint (else
    None)."""
    if not os.path.isfile(path):
        return "missing", None, None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a checkpoint, unpicklable: all "does not load"
        reason = "does not load ({}: {})".format(type(e).__name__, str(e).splitlines()[0][:120])
        return reason, None, None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        return "has no model state", None, None
    iteration = data.get("iteration")
    bad = non_finite_entries(data["model"])
    if bad:
        return (
            "holds non-finite values in {} tensors (e.g. {})".format(len(bad), bad[0]),
            iteration,
            None,
        )
    return None, iteration, data


class SafeCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic writes, finite-only checkpoints and a resume that falls
    back to the newest sound checkpoint (see the module doc). Same constructor and files."""

    # ----------------------------------------------------------------------------- writing
    def _write_atomically(self, path: str, write):
        tmp = path + ".tmp"
        with self.path_manager.open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def save(self, name: str, **kwargs) -> None:
        """Detectron2's ``save`` (same file, same content), written atomically; a model state that
        is not finite is refused with an error in the log, and nothing is written or tagged."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        bad = non_finite_entries(data["model"])
        if bad:
            logger.error(
                "Not saving checkpoint '%s': %d model tensors hold NaN or inf (e.g. %s); "
                "'%s' still names the last sound checkpoint.",
                name,
                len(bad),
                bad[0],
                LAST_CHECKPOINT,
            )
            return
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = "{}.pth".format(name)
        save_file = os.path.join(self.save_dir, basename)
        logger.info("Saving checkpoint to %s", save_file)
        self._write_atomically(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, LAST_CHECKPOINT)
        self._write_atomically(path, lambda f: f.write(last_filename_basename.encode()))

    # ----------------------------------------------------------------------------- resuming
    def tagged_checkpoint(self) -> str:
        """The basename ``last_checkpoint`` names ("" when it is missing or empty)."""
        path = os.path.join(self.save_dir, LAST_CHECKPOINT)
        if not self.path_manager.exists(path):
            return ""
        with self.path_manager.open(path, "r") as f:
            return f.read().strip()

    def candidates(self) -> List[str]:
        """Checkpoint files of ``save_dir``, the tagged one first, then newest first (final, then
        by the iteration in the name, then by modification time)."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        files = [os.path.basename(p) for p in self.get_all_checkpoint_files()]

        def newest_first(name):
            if name.endswith("_final.pth"):
                return (2, math.inf, 0.0)
            m = _PERIODIC_NAME.search(name)
            mtime = os.path.getmtime(os.path.join(self.save_dir, name))
            return (1, int(m.group(1)), mtime) if m else (0, -1, mtime)

        ordered = sorted(files, key=newest_first, reverse=True)
        tagged = self.tagged_checkpoint()
        if tagged:
            ordered = [tagged] + [f for f in ordered if f != tagged]
        return ordered

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and (super().has_checkpoint() or bool(self.candidates()))

    def sound_checkpoint(self, reject=None, share: bool = True) -> Optional[str]:
        """The path of the first checkpoint in :meth:`candidates` order that loads, is finite and
        that ``reject(iteration)`` (optional) does not reject by returning a reason; None when no
        checkpoint qualifies. Every skipped file is named in the log, with why. Decided on the
        main process; with ``share``, given to every process (a collective)."""
        return self._choose(reject, share)[0]

    def _choose(self, reject, share, keep=False):
        """``(chosen path or None, whether there was any candidate)``: :meth:`sound_checkpoint`."""
        choice, any_candidate = None, False
        if comm.is_main_process():
            names = self.candidates()
            any_candidate = bool(names)
            for name in names:
                path = os.path.join(self.save_dir, name)
                problem, iteration, data = read_checked(path)
                if problem is None and reject is not None:
                    problem = reject(iteration)
                if problem is None:
                    choice = path
                    if keep:  # the resume loads it next, without reading it again
                        self._checked = (path, data)
                    break
                logger.warning("Checkpoint %s: %s; skipped.", path, problem)
        if share and comm.get_world_size() > 1:
            choice, any_candidate = comm.all_gather((choice, any_candidate))[0]
        return choice, any_candidate

    def _load_file(self, filename):
        """Detectron2's file loading, except for the checkpoint the resume has just read and
        checked (:meth:`_choose`): that one is not read a second time. Records the model-state
        keys of the file as :attr:`loaded_model_keys` (hooks ask it instead of reading the file
        again, e.g. LOCE's stage 2 for the mean scores)."""
        checked, self._checked = getattr(self, "_checked", None), None
        if checked is not None and checked[0] == filename:
            loaded = checked[1]
        else:
            loaded = super()._load_file(filename)
        model = loaded.get("model") if isinstance(loaded, dict) else None
        #: the model-state keys of the last file loaded (None before any load)
        self.loaded_model_keys = frozenset(model) if isinstance(model, dict) else frozenset()
        return loaded

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Detectron2's ``resume_or_load``; on resume, from the newest sound checkpoint (the
        tagged one if it is sound), which is then tagged. Every process takes the main process's
        decision."""
        if not resume:
            return self.load(path, checkpointables=[])
        chosen, any_candidate = self._choose(None, share=True, keep=True)
        if not any_candidate:
            return self.load(path, checkpointables=[])
        tagged = self.tagged_checkpoint()
        if chosen is None:
            raise RuntimeError(
                "--resume: no checkpoint in {} can be loaded (last_checkpoint names {}; the log "
                "says why each was skipped). Start again without --resume, or give a checkpoint "
                "with MODEL.WEIGHTS.".format(self.save_dir, tagged or "none")
            )
        if os.path.basename(chosen) != tagged:
            logger.warning(
                "--resume: last_checkpoint names %s, which cannot be used; resuming "
                "from %s instead (now tagged).",
                tagged or "nothing",
                chosen,
            )
            if self.save_to_disk:
                self.tag_last_checkpoint(os.path.basename(chosen))
        return self.load(chosen)

    def ensure_final(self, last_iter: int, name: str = "model_final") -> bool:
        """For a run resumed after its last iteration (nothing left to train, so Detectron2's
        ``PeriodicCheckpointer`` writes nothing): write ``<name>.pth`` again from the loaded state
        when it is missing or not sound. Returns whether it was written."""
        path = os.path.join(self.save_dir, name + ".pth")
        if not self.save_to_disk or checkpoint_problem(path)[0] is None:
            return False
        logger.warning(
            "The run is complete but %s is missing or broken: writing it again from "
            "the resumed checkpoint (iteration %d).",
            path,
            last_iter,
        )
        self.save(name, iteration=last_iter)
        return True

    def prepare_resume_after_divergence(self, reject) -> Optional[str]:
        """Make ``--resume`` continue from the newest sound checkpoint that ``reject(iteration)``
        accepts (see :func:`~libra_d2.engine.divergence.untrusted_after_divergence`): it is tagged,
        and the checkpoints newer than it are renamed ``<name>.pth.untrusted`` (kept, never resumed
        from). Returns its path, or None: then every checkpoint is set aside and ``--resume``
        starts afresh from MODEL.WEIGHTS. Main process only (no collective: only it sees the
        divergence)."""
        chosen = self.sound_checkpoint(reject=reject, share=False)
        if not self.save_to_disk:
            return chosen
        for name in self.candidates():
            if chosen is not None and name == os.path.basename(chosen):
                break  # candidates are newest first: the rest are older than the chosen one
            path = os.path.join(self.save_dir, name)
            if os.path.isfile(path):
                os.replace(path, path + ".untrusted")
                logger.warning("Set aside %s as %s.untrusted (not resumed from).", path, name)
        if chosen is not None:
            self.tag_last_checkpoint(os.path.basename(chosen))
        else:
            tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
            if os.path.exists(tag):
                os.remove(tag)
        return chosen
