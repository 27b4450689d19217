#!/usr/bin/env python
"""The GPU check: everything of libra_d2 that only a CUDA GPU can show, in one run of < 10 minutes.

    bash dev/gpu_check.sh [--out output/gpu_check] [--iters 20] [--only NAME ...]
    python dev/gpu_check.py --plan          # the steps, without running them (any machine)

Steps (each timed; one summary table at the end, also written to OUT/gpu.md):
1. the CUDA-only tests (``pytest -m cuda``: compiled ops' CUDA kernels, device placement);
2. one short training of each method family's tiny LT-Shapes config on ``cuda``, in fp32 and with
   AMP (``SOLVER.AMP.ENABLED``): Libra Faster / Mask R-CNN, Libra RetinaNet, RGA + PRM, EFL, and
   LOCE stage 1 then stage 2 (from the stage-1 weights): finite losses, seconds per iteration;
3. host synchronisations per training step, counted with ``torch.cuda.set_sync_debug_mode``
   (each family, fp32), with the places they come from;
4. a 1-GPU NCCL process group through libra_d2's launcher: the methods' statistics all-reduced on
   CUDA tensors and a LibraTrainer step inside the group;
5. the speed benchmarks on ``cuda`` (ratios against the plain detectors), written to OUT/.

It refuses to start without CUDA (exit code 2). The LT-Shapes data is generated if missing.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "configs/LT-Shapes/"
#: (name, config, extra options); LOCE stage 2 starts from the stage-1 run's weights.
TRAININGS = [
    ("Libra Faster R-CNN", TINY + "libra_faster_rcnn_R_18_FPN_tiny.yaml", []),
    ("Libra Mask R-CNN", TINY + "libra_mask_rcnn_R_18_FPN_tiny.yaml", []),
    ("Libra RetinaNet", TINY + "libra_retinanet_R_18_FPN_tiny.yaml", []),
    ("RGA + PRM", TINY + "faster_rcnn_R_18_FPN_tiny_rga_prm.yaml", []),
    ("EFL RetinaNet", TINY + "efl_retinanet_R_18_FPN_tiny.yaml", []),
    ("LOCE stage 1", TINY + "loce_faster_rcnn_R_18_FPN_tiny_stage1.yaml", []),
    (
        "LOCE stage 2",
        TINY + "loce_faster_rcnn_R_18_FPN_tiny_stage2.yaml",
        ["@weights:LOCE stage 1"],
    ),
]
BENCHMARKS = [
    ["dev/benchmark_libra_rcnn.py", "--rounds", "3", "--steps", "5"],
    ["dev/benchmark_rga_prm.py", "--rounds", "3", "--steps", "5"],
    ["dev/benchmark_efl.py", "--repeats", "20", "--step-repeats", "10"],
    ["dev/benchmark_loce.py", "--rounds", "3", "--steps", "4", "--repeats", "20"],
    ["dev/benchmark_sampler.py", "--repeats", "1000", "--rounds", "5"],
]


def plan(args):
    steps = ["pytest -m cuda (the CUDA-only tests)"]
    for name, config, _ in TRAININGS:
        for precision in ("fp32", "amp"):
            steps.append(
                "train {} [{}] {} for {} iterations".format(name, precision, config, args.iters)
            )
    steps += ["host syncs per step: " + name for name, _, _ in TRAININGS[:-1]]
    steps.append("NCCL process group of 1 GPU through libra_d2.engine.launch")
    steps += ["benchmark on cuda: " + b[0] for b in BENCHMARKS]
    return [s for s in steps if not args.only or any(o.lower() in s.lower() for o in args.only)]


# --------------------------------------------------------------------------------------- steps
def run(cmd, log_path, env=None, timeout=600):
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            timeout=timeout,
        )
    return proc.returncode, time.perf_counter() - t0


def cuda_tests(args, out):
    rc, secs = run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:randomly", "tests"],
        os.path.join(out, "pytest_cuda.log"),
    )
    with open(os.path.join(out, "pytest_cuda.log")) as f:
        tail = [line.strip() for line in f if "passed" in line or "failed" in line]
    return {
        "step": "CUDA-only tests",
        "ok": rc == 0,
        "seconds": secs,
        "detail": tail[-1] if tail else "rc={}".format(rc),
    }


def tiny_recipe():
    """The tiny configs fine-tune the pre-trained ResNet-18; on a machine that has not built it
    (``make pretrained``) the checks train from scratch instead (``TINY_FROM_SCRATCH``)."""
    from detectron2.utils.file_io import PathManager

    from libra_d2.checkpoint import TINY_BACKBONE_WEIGHTS, TINY_FROM_SCRATCH

    return [] if PathManager.isfile(TINY_BACKBONE_WEIGHTS) else list(TINY_FROM_SCRATCH)


def training(args, out, name, config, extra, precision, finished):
    run_dir = os.path.join(out, "train", name.replace(" ", "_").replace("+", "plus"), precision)
    opts = tiny_recipe()  # first: a stage-2 run's weights come after it
    for e in extra:
        if e.startswith("@weights:"):
            src = finished.get((e.split(":", 1)[1], precision))
            if src is None:
                return {
                    "step": "train {} [{}]".format(name, precision),
                    "ok": False,
                    "seconds": 0,
                    "detail": "needs {}".format(e.split(":", 1)[1]),
                }
            opts += ["MODEL.WEIGHTS", os.path.join(src, "model_final.pth")]
        else:
            opts.append(e)
    cmd = [
        sys.executable,
        "projects/train_net.py",
        "--config-file",
        config,
        "MODEL.DEVICE",
        "cuda",
        "SOLVER.AMP.ENABLED",
        str(precision == "amp"),
        "SOLVER.MAX_ITER",
        str(args.iters),
        "SOLVER.CHECKPOINT_PERIOD",
        str(args.iters),
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        run_dir,
        *opts,
    ]
    os.makedirs(run_dir, exist_ok=True)
    rc, secs = run(cmd, os.path.join(run_dir, "stdout.log"))
    detail, ok = "exit code {}".format(rc), rc == 0
    metrics = os.path.join(run_dir, "metrics.json")
    if ok and os.path.exists(metrics):
        with open(metrics) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        losses = [r["total_loss"] for r in rows if "total_loss" in r]
        times = [r["time"] for r in rows if "time" in r]
        ok = bool(losses) and all(math.isfinite(x) for x in losses)
        detail = (
            "total_loss {:.3f} -> {:.3f}; {:.3f} s/iter".format(
                losses[0], losses[-1], times[-1] if times else float("nan")
            )
            if losses
            else "no losses"
        )
        if ok:
            finished[(name, precision)] = run_dir
    return {
        "step": "train {} [{}]".format(name, precision),
        "ok": ok,
        "seconds": secs,
        "detail": detail,
    }


def host_syncs(args, out, name, config):
    """Training steps of ``config`` on cuda; the third one under sync debug mode "warn"."""
    import torch
    from detectron2.engine import default_argument_parser
    from detectron2.utils.events import EventStorage

    from libra_d2.engine import LibraTrainer, setup_cfg

    t0 = time.perf_counter()
    cli = default_argument_parser().parse_args(
        [
            "--config-file",
            os.path.join(REPO_ROOT, config),
            "MODEL.DEVICE",
            "cuda",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            os.path.join(out, "syncs"),
        ]
    )
    cfg = setup_cfg(cli, do_default_setup=False)
    trainer = LibraTrainer(cfg)
    trainer.iter = trainer.start_iter = 0
    with EventStorage(0) as trainer.storage:
        trainer.before_train()  # the hooks' set-up (RGA's parameter selection, ...)
        for _ in range(2):
            trainer.run_step()
            trainer.storage.iter += 1
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.run_step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    places = {}
    for w in caught:
        if "synchroniz" not in str(w.message):
            continue
        where = "{}:{}".format(
            (
                os.path.relpath(w.filename, REPO_ROOT)
                if w.filename.startswith(REPO_ROOT)
                else "/".join(w.filename.split("/")[-3:])
            ),
            w.lineno,
        )
        places[where] = places.get(where, 0) + 1
    total = sum(places.values())
    ours = {k: v for k, v in places.items() if k.startswith("libra_d2")}
    with open(os.path.join(out, "syncs_{}.json".format(name.replace(" ", "_"))), "w") as f:
        json.dump(places, f, indent=1, sort_keys=True)
    busiest = sorted(ours.items(), key=lambda kv: -kv[1])[:4]
    top = ", ".join("{} x{}".format(k, v) for k, v in busiest)
    return {
        "step": "host syncs per step: " + name,
        "ok": True,
        "seconds": time.perf_counter() - t0,
        "detail": "{} in all, {} in libra_d2{}".format(
            total, sum(ours.values()), " ({})".format(top) if top else ""
        ),
    }


def _nccl_worker(config, result_path):
    import torch
    import torch.distributed as dist
    from detectron2.engine import default_argument_parser
    from detectron2.utils.events import EventStorage

    from libra_d2.engine import LibraTrainer, setup_cfg

    assert dist.get_backend() == "nccl", dist.get_backend()
    cli = default_argument_parser().parse_args(
        [
            "--config-file",
            os.path.join(REPO_ROOT, config),
            "MODEL.DEVICE",
            "cuda",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            os.path.dirname(result_path),
        ]
    )
    trainer = LibraTrainer(setup_cfg(cli, do_default_setup=False))
    stats = {k: v for k, v in trainer.model.state_dict().items() if k.startswith("efl.statistics")}
    reduced = {}
    for k, v in stats.items():  # the all-reduce the statistics use, on their CUDA tensors
        t = v.clone()
        dist.all_reduce(t)
        reduced[k] = bool(torch.equal(t, v)) and t.is_cuda
    trainer.iter = trainer.start_iter = 0
    with EventStorage(0) as trainer.storage:
        trainer.before_train()
        trainer.run_step()
    with open(result_path, "w") as f:
        json.dump({"reduced": reduced, "world_size": dist.get_world_size()}, f)


def nccl_group(args, out):
    from libra_d2.engine import launch

    t0 = time.perf_counter()
    path = os.path.join(out, "nccl", "result.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    launch(
        _nccl_worker,
        1,
        args=(TINY + "efl_retinanet_R_18_FPN_tiny.yaml", path),
        use_cuda=True,
        init_single_process_group=True,
    )
    with open(path) as f:
        res = json.load(f)
    ok = bool(res["reduced"]) and all(res["reduced"].values())
    return {
        "step": "NCCL process group (1 GPU)",
        "ok": ok,
        "seconds": time.perf_counter() - t0,
        "detail": "{} EFL statistic tensors all-reduced on CUDA, a training step in the "
        "group".format(len(res["reduced"])),
    }


def benchmark(args, out, cmd):
    name = os.path.splitext(os.path.basename(cmd[0]))[0]
    report = os.path.join(out, "{}.md".format(name))
    rc, secs = run(
        [sys.executable, *cmd, "--device", "cuda", "--output", report],
        os.path.join(out, "{}.log".format(name)),
    )
    return {
        "step": "benchmark " + name,
        "ok": rc == 0,
        "seconds": secs,
        "detail": (
            "table in {}".format(os.path.relpath(report, REPO_ROOT))
            if rc == 0
            else "exit code {} (log: {}.log)".format(rc, name)
        ),
    }


# ---------------------------------------------------------------------------------------- main
def summary_table(results, device):
    lines = [
        "GPU check on {} ({}).".format(device, time.strftime("%Y-%m-%d")),
        "",
        "| step | result | seconds | detail |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            "| {} | {} | {:.0f} | {} |".format(
                r["step"], "ok" if r["ok"] else "FAILED", r["seconds"], r["detail"]
            )
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "output", "gpu_check"))
    ap.add_argument("--iters", type=int, default=20, help="iterations of each training")
    ap.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="run only the steps whose name has one of these words",
    )
    ap.add_argument("--plan", action="store_true", help="print the steps and exit")
    args = ap.parse_args()
    steps = plan(args)
    if args.plan:
        print("\n".join("{:2d}. {}".format(i + 1, s) for i, s in enumerate(steps)))
        return 0
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); this "
            "check needs a CUDA GPU. `python dev/gpu_check.py --plan` lists its steps.",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, REPO_ROOT)
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("DETECTRON2_DATASETS", os.path.join(REPO_ROOT, "datasets"))
    root = os.path.join(os.environ["DETECTRON2_DATASETS"], "lt_shapes")
    if not os.path.exists(os.path.join(root, "lt_shapes_train.json")):
        subprocess.check_call(
            [sys.executable, "datasets/prepare_lt_shapes.py", "--root", root], cwd=REPO_ROOT
        )
    import libra_d2  # noqa: F401  (registers LT-Shapes at $DETECTRON2_DATASETS)

    def wanted(step):
        return step in steps

    results, finished = [], {}
    t_start = time.perf_counter()
    if wanted("pytest -m cuda (the CUDA-only tests)"):
        results.append(cuda_tests(args, args.out))
    for name, config, extra in TRAININGS:
        for precision in ("fp32", "amp"):
            if wanted(
                "train {} [{}] {} for {} iterations".format(name, precision, config, args.iters)
            ):
                results.append(training(args, args.out, name, config, extra, precision, finished))
                print(results[-1], flush=True)
    for name, config, _ in TRAININGS[:-1]:
        if wanted("host syncs per step: " + name):
            try:
                results.append(host_syncs(args, args.out, name, config))
            except Exception as e:  # report and go on: one table for everything
                results.append(
                    {
                        "step": "host syncs per step: " + name,
                        "ok": False,
                        "seconds": 0,
                        "detail": repr(e)[:200],
                    }
                )
    if wanted("NCCL process group of 1 GPU through libra_d2.engine.launch"):
        try:
            results.append(nccl_group(args, args.out))
        except Exception as e:
            results.append(
                {
                    "step": "NCCL process group (1 GPU)",
                    "ok": False,
                    "seconds": 0,
                    "detail": repr(e)[:200],
                }
            )
    for cmd in BENCHMARKS:
        if wanted("benchmark on cuda: " + cmd[0]):
            results.append(benchmark(args, args.out, cmd))
    table = summary_table(results, torch.cuda.get_device_name())
    table += "\n\nTotal {:.0f} s. Logs, metrics and benchmark tables under `{}`.".format(
        time.perf_counter() - t_start, os.path.relpath(args.out, REPO_ROOT)
    )
    print(table)
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write("# GPU check (dev/gpu_check.sh)\n\n" + table + "\n")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
