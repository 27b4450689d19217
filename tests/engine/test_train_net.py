"""End-to-end: train_net.py and lazy_train_net.py train, evaluate, checkpoint, resume, reload,
on one process and on two CPU processes."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, TINY_INPUT

FASTER = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
RETINA = "configs/LT-Shapes/retinanet_R_18_FPN_tiny.yaml"
EFL_TINY = "configs/LT-Shapes/efl_retinanet_R_18_FPN_tiny.yaml"
NO_EVAL = ["DATASETS.TEST", "()"]
# A 4-iteration model scores everything below the default 0.05 test threshold; keep all its
# detections so the evaluation has something to measure.
KEEP_ALL = [
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "MODEL.RETINANET.SCORE_THRESH_TEST",
    "0.0",
    "TEST.DETECTIONS_PER_IMAGE",
    "20",
]


def _weights(path):
    return torch.load(path, map_location="cpu")["model"]


def _assert_lvis_results(results):
    bbox = results["bbox"]
    for key in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
        assert key in bbox, key
        assert bbox[key] == bbox[key]  # not NaN


@pytest.mark.parametrize("config", [FASTER, RETINA], ids=["faster_rcnn", "retinanet"])
def test_train_evaluate_and_reload(run_script, tmp_path, config):
    out = tmp_path / "run"
    run_script(
        "projects/train_net.py",
        "--config-file",
        config,
        "SOLVER.MAX_ITER",
        "4",
        "OUTPUT_DIR",
        str(out),
        *KEEP_ALL,
        *TINY_INPUT,
    )
    for name in ("model_final.pth", "metrics.json", "config.yaml", "last_checkpoint"):
        assert (out / name).exists(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
    with open(out / "eval_results.json") as f:
        trained = json.load(f)
    _assert_lvis_results(trained)
    # The checkpoint is model-zoo style: DetectionCheckpointer loads it for --eval-only and the
    # evaluation reproduces the numbers of the end of training exactly.
    out2 = tmp_path / "eval_only"
    run_script(
        "projects/train_net.py",
        "--config-file",
        config,
        "--eval-only",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(out2),
        *KEEP_ALL,
        *TINY_INPUT,
    )
    with open(out2 / "eval_results.json") as f:
        reloaded = json.load(f)
    assert reloaded == trained


def test_resume_is_exact(run_script, tmp_path):
    """A run resumed from its iteration-3 checkpoint ends with bit-identical weights, optimizer
    state and LR schedule to the uninterrupted run."""
    common = [
        "--config-file",
        FASTER,
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.CHECKPOINT_PERIOD",
        "3",
        "SOLVER.WARMUP_ITERS",
        "4",
        *NO_EVAL,
        *TINY_INPUT,
    ]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_script("projects/train_net.py", *common, "OUTPUT_DIR", str(full))
    resumed.mkdir()
    shutil.copy(full / "model_0000002.pth", resumed / "model_0000002.pth")
    (resumed / "last_checkpoint").write_text("model_0000002.pth")
    proc = run_script("projects/train_net.py", "--resume", *common, "OUTPUT_DIR", str(resumed))
    assert "Loading checkpoint from" in proc.stdout or "model_0000002.pth" in proc.stdout

    a = torch.load(full / "model_final.pth", map_location="cpu")
    b = torch.load(resumed / "model_final.pth", map_location="cpu")
    assert a["iteration"] == b["iteration"] == 5
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    opt_a, opt_b = a["trainer"]["_trainer"]["optimizer"], b["trainer"]["_trainer"]["optimizer"]
    assert opt_a["state"], "optimizer state must be checkpointed"
    for pid in opt_a["state"]:
        for name, value in opt_a["state"][pid].items():
            assert torch.equal(value, opt_b["state"][pid][name]), (pid, name)
    assert a["trainer"]["hooks"]["LRScheduler"] == b["trainer"]["hooks"]["LRScheduler"]


def test_resume_without_rng_restore_would_differ(run_script, tmp_path):
    """Guards the exactness test: starting the same 3 remaining iterations from the same weights
    but without the checkpoint's trainer state (optimizer, RNG, data position) gives different
    weights, so equality above is not an accident."""
    common = [
        "--config-file",
        FASTER,
        "SOLVER.CHECKPOINT_PERIOD",
        "3",
        "SOLVER.WARMUP_ITERS",
        "4",
        *NO_EVAL,
        *TINY_INPUT,
    ]
    full = tmp_path / "full"
    run_script("projects/train_net.py", *common, "SOLVER.MAX_ITER", "6", "OUTPUT_DIR", str(full))
    restart = tmp_path / "restart"
    run_script(
        "projects/train_net.py",
        *common,
        "SOLVER.MAX_ITER",
        "3",
        "MODEL.WEIGHTS",
        str(full / "model_0000002.pth"),
        "OUTPUT_DIR",
        str(restart),
    )
    a, b = _weights(full / "model_final.pth"), _weights(restart / "model_final.pth")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def _start_script(lt_shapes_tiny, script, *args):
    env = dict(os.environ, DETECTRON2_DATASETS=lt_shapes_tiny, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs, timeout=600):
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, "exit code {}:\n{}".format(p.returncode, out[-6000:])
        outputs.append(out)
    return outputs


SAME_MODEL = "All 2 ranks hold identical parameters and method statistics"


def test_two_cpu_processes_twice_at_once(lt_shapes_tiny, tmp_path):
    """Two 2-process runs started together each rendezvous on a port their launcher holds (the
    parser's fixed default port made the second fail with EADDRINUSE), and in each both processes
    end with the same model (checked across ranks by RankConsistencyCheck, rank 0 saved it)."""
    runs = [
        _start_script(
            lt_shapes_tiny,
            "projects/train_net.py",
            "--config-file",
            FASTER,
            "--num-gpus",
            "2",
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "OUTPUT_DIR",
            str(tmp_path / name),
            *NO_EVAL,
            *TINY_INPUT,
        )
        for name in ("a", "b")
    ]
    for name, out in zip(("a", "b"), _finish(runs)):
        assert "World size: 2" in out
        assert SAME_MODEL in out
        assert (tmp_path / name / "model_final.pth").exists()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_over_loopback(lt_shapes_tiny, tmp_path):
    """--num-machines 2 with one process each, over tcp://127.0.0.1: both ranks end with identical
    parameters and EFL statistics (all-reduced), and rank 0 saves the checkpoint."""
    out = tmp_path / "two_machines"
    url = "tcp://127.0.0.1:{}".format(_free_port())
    machines = [
        _start_script(
            lt_shapes_tiny,
            "projects/train_net.py",
            "--config-file",
            EFL_TINY,
            "--num-gpus",
            "1",
            "--num-machines",
            "2",
            "--machine-rank",
            str(rank),
            "--dist-url",
            url,
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "OUTPUT_DIR",
            str(out),
            *NO_EVAL,
            *TINY_INPUT,
        )
        for rank in (0, 1)
    ]
    rank0, _ = _finish(machines)
    rank1 = (out / "log.txt.rank1").read_text()  # rank 1 logs to its file only, as in Detectron2
    assert "World size: 2" in rank0 and "Rank of current process: 1" in rank1
    # checked at the checkpoint period (iteration 2) and at the end, on both machines
    for log in (rank0, rank1):
        assert SAME_MODEL in log and "at iteration 2" in log and "at the end of training" in log
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert final["efl.statistics.neg_grad"].sum() > 0  # the statistics did train


def test_lazy_config_launcher(run_script, tmp_path):
    out = tmp_path / "lazy"
    run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        "configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py",
        "train.max_iter=3",
        "train.output_dir=" + str(out),
        "model.roi_heads.box_predictor.test_score_thresh=0.0",
        "dataloader.train.mapper.augmentations.0.short_edge_length=64",
        "dataloader.train.mapper.augmentations.0.max_size=64",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "dataloader.test.mapper.augmentations.0.max_size=64",
    )
    assert (out / "model_final.pth").exists()
    with open(out / "eval_results.json") as f:
        trained = json.load(f)
    _assert_lvis_results(trained)
    proc = run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        "configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny.py",
        "--eval-only",
        "train.init_checkpoint=" + str(out / "model_final.pth"),
        "train.output_dir=" + str(out),
        "model.roi_heads.box_predictor.test_score_thresh=0.0",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "dataloader.test.mapper.augmentations.0.max_size=64",
    )
    assert "copypaste" in proc.stdout
    with open(out / "eval_results.json") as f:
        assert json.load(f) == trained


_TINY_LAZY_INPUT = [
    "dataloader.train.mapper.augmentations.0.short_edge_length=64",
    "dataloader.train.mapper.augmentations.0.max_size=64",
    "dataloader.test.mapper.augmentations.0.short_edge_length=64",
    "dataloader.test.mapper.augmentations.0.max_size=64",
]
EFL_LAZY = "configs/LT-Shapes/lazy/efl_retinanet_R_18_FPN_tiny.py"


def test_lazy_efl_loader_uses_repeat_factor_sampling(lt_shapes_tiny):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data.samplers import RepeatFactorTrainingSampler

    cfg = LazyConfig.load(EFL_LAZY)
    loader = instantiate(cfg.dataloader.train)
    sampler = loader.resumable_sampler.sampler
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    assert float(sampler._int_part.max() + sampler._frac_part.max()) > 1.0  # the tail repeats
    cfg.dataloader.train.repeat_threshold = 0  # off
    assert not isinstance(
        instantiate(cfg.dataloader.train).resumable_sampler.sampler, RepeatFactorTrainingSampler
    )


def test_lazy_efl_retinanet_trains(run_script, tmp_path):
    out = tmp_path / "efl"
    run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        EFL_LAZY,
        "train.max_iter=2",
        "train.output_dir=" + str(out),
        "model.log_period=1",
        "model.test_score_thresh=0.0",
        *_TINY_LAZY_INPUT,
    )
    assert (out / "model_final.pth").exists()
    weights = _weights(out / "model_final.pth")
    assert (
        "efl.statistics.pos_grad" in weights and float(weights["efl.statistics.pos_grad"].sum()) > 0
    )
    with open(out / "metrics.json") as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    assert any("efl/gamma/r" in m for m in metrics)  # frequency groups from the metadata
    with open(out / "eval_results.json") as f:
        _assert_lvis_results(json.load(f))
