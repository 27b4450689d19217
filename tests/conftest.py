import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Overrides that make the tiny LT-Shapes configs fit the 64 px "tiny" preset and run in seconds.
TINY_INPUT = [
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "64",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "64",
]


def short_training(output_dir, max_iter=2, *extra):
    """Overrides for a short training of a tiny config on the tiny preset into ``output_dir``:
    ``max_iter`` iterations at batch 2, no test set, 64 px input; ``extra`` overrides first."""
    return [
        *extra,
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(output_dir),
        *TINY_INPUT,
    ]


def pytest_report_header(config):
    """Which Detectron2 this run tests, and which of libra_d2's feature probes are live in it."""
    import detectron2

    from libra_d2.utils.compat import feature_report

    live = ", ".join("{}={}".format(k, v) for k, v in feature_report().items())
    return [
        "detectron2: {} ({})".format(detectron2.__version__, os.path.dirname(detectron2.__file__)),
        "libra_d2 feature probes: " + live,
    ]


@pytest.fixture(scope="session", autouse=True)
def tiny_pretrained_weights(tmp_path_factory):
    """The tiny configs fine-tune ``libra_d2://pretrained/R-18-LTShapes-crops.pth`` (25 minutes to
    build with ``make pretrained``). Tests load instead a 40-iteration pre-training on 32 px crops,
    made by the same code into a session folder, through the same path: ``$LIBRA_D2_PRETRAINED``
    points there, for this process and the scripts it starts; a machine's real checkpoint is never
    read. (40 iterations: after 4, FrozenBN's running statistics do not yet match the weights, and
    the features reach 1e4-1e5, measured.)"""
    from detectron2.config import get_cfg

    from libra_d2.checkpoint import TINY_BACKBONE_WEIGHTS, resolve_weights
    from libra_d2.config import add_libra_config
    from libra_d2.engine.backbone_pretraining import pretrain_backbone

    root = tmp_path_factory.mktemp("pretrained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIBRA_D2_PRETRAINED", str(root))
        cfg = get_cfg()
        add_libra_config(cfg)
        cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/LT-Shapes/Base-Tiny.yaml"))
        pretrain_backbone(
            cfg,
            resolve_weights(TINY_BACKBONE_WEIGHTS),
            num_train=32,
            num_val=8,
            crop_size=32,
            iters=40,
            batch_size=8,
            log_period=2,
        )
        yield resolve_weights(TINY_BACKBONE_WEIGHTS)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Unit tests use tiny tensors: intra-op threads only add overhead, and thrash when other jobs
    share the cores. (Scripts started by ``run_script`` choose their own.)"""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def lt_shapes_tiny(tmp_path_factory):
    """The tiny LT-Shapes preset, generated once per test session; returns its datasets root
    (the value for $DETECTRON2_DATASETS) and registers it in this process."""
    from libra_d2.data.datasets.lt_shapes import register_lt_shapes
    from libra_d2.data.datasets.lt_shapes_generate import generate_lt_shapes

    datasets_root = tmp_path_factory.mktemp("datasets")
    root = datasets_root / "lt_shapes"
    generate_lt_shapes(str(root), preset="tiny", verbose=False)
    register_lt_shapes(str(root))
    yield str(datasets_root)
    register_lt_shapes()  # back to the default location


@pytest.fixture
def run_script(lt_shapes_tiny):
    """Run a project script in a fresh interpreter against the tiny dataset; returns the
    CompletedProcess (stdout and stderr merged)."""

    def run(script, *args, check=True, timeout=600):
        env = dict(os.environ, DETECTRON2_DATASETS=lt_shapes_tiny, PYTHONUNBUFFERED="1")
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, script), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                "{} failed with exit code {}:\n{}".format(
                    script, proc.returncode, proc.stdout[-6000:]
                )
            )
        return proc

    return run
