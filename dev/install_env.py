#!/usr/bin/env python3
"""Build the project's virtual environment: torch, Detectron2, the evaluation libraries, libra_d2.

    python3 dev/install_env.py [--venv .venv] [--force]

Run by `make env` (and so by `make demo` / `make test`). Idempotent: when the environment is
complete and was built by this exact script with the same package specs, it returns at once.

Environment variables (all optional):
    TORCH_SPEC        pip spec(s) for torch + torchvision. Default: the pinned pair below.
    DETECTRON2_SPEC   pip spec of the official Detectron2 source, tried first (e.g. a git URL, a
                      local checkout or a source archive such as
                      ../shared/vendor/detectron2-main.tar.gz).
                      Set it to an empty string to go straight to the fallback.
    DETECTRON2_FALLBACK  "1" (default): fall back to pb1-detectron2 0.6 when the official source
                      cannot be installed. "0": fail instead (CI's Detectron2-main environment
                      must never silently test 0.6).
    LIBRA_D2_WHEEL_CACHE  where wheels built from a local Detectron2 archive or checkout are kept
                      (default ~/.cache/libra_d2/wheels), keyed by the source's content hash, the
                      Python and the torch version: the 15-minute build of the compiled ops runs
                      once per machine. Set it to an empty string to always build.
    LIBRA_D2_EXTRA_PIP_ARGS  extra arguments for every pip call (e.g. a local index).

Why each step is here (this is the only place that knows how the environment is made):
* torch / torchvision: the default PyPI builds (CUDA-enabled) run on CPU as well. They are pinned
  because an unpinned `torch` resolves to the newest release (several GB to download) and because
  the CPU-only torch wheel that some machines carry has no matching torchvision.
* Detectron2 is not on PyPI under its name. The official source is tried first (GPU users get the
  compiled ops); when it cannot be reached or built we fall back to `pb1-detectron2==0.6`, which is
  the official 0.6 source release *without* its C++ sources (`detectron2/layers/csrc` is missing).
  That sdist cannot be installed by pip as it is, so we:
    - fetch and unpack it with `pip download --no-clean` (pip refuses to resolve it because one of
      its extras names a direct URL; the unpacked tree is still left in our private TMPDIR);
    - drop the C++ extension and that URL extra from its setup.py, and unpin `black==21.4b2`, which
      does not install on current Python;
    - copy its model-zoo configs where its setup.py looks for them (they are otherwise not
      installed, and `detectron2.model_zoo.get_config_file` would fail);
    - replace NumPy aliases removed in NumPy 1.24 (`np.bool`, `np.int`, `np.float`, `np.str`,
      `np.object`) by the builtins they always meant, and `Image.LINEAR` (removed in Pillow 10) by
      `Image.BILINEAR`, its old alias;
    - add a stand-in `detectron2/_C.py`: importing it works (several modules import `_C` at module
      level), and touching a missing op (rotated boxes, deformable conv, the fast COCOeval, ...)
      raises an error naming the op and how to get it, instead of an ImportError deep inside an
      unrelated import, or silence.
  `setuptools<81` is kept because `detectron2.model_zoo` imports `pkg_resources`.
* ninja: torch's extension builder compiles Detectron2's C++ sources in parallel with it (the build
  of main's compiled ops is the slow step of a fresh environment).
* lvis 0.5.3 (the newest) uses `np.float`; libra_d2 fixes that at run time (libra_d2/evaluation), so
  it is installed unmodified here.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_TORCH_SPEC = "torch==2.14.1 torchvision==0.29.1"
DEFAULT_DETECTRON2_SPEC = "git+https://github.com/facebookresearch/detectron2.git"
FALLBACK_DETECTRON2 = "pb1-detectron2==0.6"
# Runtime and test dependencies of Detectron2 and libra_d2 (Detectron2's own list, minus what does
# not install on current Python, plus the evaluation libraries and the test runner).
BASE_PACKAGES = [
    "setuptools<81",
    "wheel",
    "numpy",
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "lvis",
    "opencv-python-headless",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "future",
    "pydot",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
    # optional for users (pip install 'libra_d2[slurm]'): projects/submit.py; tested here
    "submitit",
    # the linters of dev/linter.sh, pinned: another black or isort release formats differently
    "black==26.10.1",
    "flake8==7.5.0",
    "isort==9.0.2",
    "ninja",
    "pytest",
]
STAMP_NAME = ".libra_d2_env.json"

# The stand-in for the compiled module, written into the fallback's source tree as detectron2/_C.py.
_C_STANDIN = '''"""Stand-in for detectron2._C, written by libra_d2's dev/install_env.py.

This Detectron2 was installed from the PyPI source release pb1-detectron2==0.6, which ships without
its C++/CUDA sources, so no compiled op exists. Import works; using any op raises
MissingCompiledOpError.
"""

IS_STANDIN = True


class MissingCompiledOpError(AttributeError):
    """Raised when code needs an op of Detectron2's compiled extension (detectron2._C)."""


def get_compiler_version():
    return "none (detectron2._C is a stand-in: no compiled ops)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise MissingCompiledOpError(
        "detectron2._C.{0} is not available: this Detectron2 was installed without its compiled "
        "C++/CUDA extension (pb1-detectron2 source release), so the op '{0}' (used by rotated "
        "boxes, "
        "deformable convolution, ROIAlignRotated and the fast COCOeval) cannot run. Install the "
        "official Detectron2 from source (see the libra_d2 README) to use it.".format(name)
    )
'''

NUMPY_ALIAS = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?![_\w])")


def log(msg):
    print("[install_env] " + msg, flush=True)


def run(cmd, **kwargs):
    log("$ " + " ".join(cmd))
    subprocess.check_call(cmd, **kwargs)


def pip(venv_python, *args):
    extra = os.environ.get("LIBRA_D2_EXTRA_PIP_ARGS", "").split()
    run([venv_python, "-m", "pip", *args, "--disable-pip-version-check", *extra])


def probe(venv_python, code):
    """Run `code` in the venv; return its stdout, or None if it fails."""
    res = subprocess.run([venv_python, "-c", code], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def fingerprint(torch_spec, d2_spec):
    with open(os.path.abspath(__file__), "rb") as f:
        script = hashlib.sha256(f.read()).hexdigest()[:16]
    with open(os.path.join(REPO_ROOT, "setup.py"), "rb") as f:
        setup_py = hashlib.sha256(f.read()).hexdigest()[:16]
    return {"script": script, "setup.py": setup_py, "torch": torch_spec, "detectron2": d2_spec}


def environment_complete(venv_python, stamp_path, expected):
    if not (os.path.exists(venv_python) and os.path.exists(stamp_path)):
        return False
    with open(stamp_path) as f:
        try:
            if json.load(f) != expected:
                return False
        except ValueError:
            return False
    # The stamp is written last; still check that the key imports work (a venv can be damaged).
    return (
        probe(venv_python, "import torch, torchvision, detectron2, libra_d2, lvis, cv2") is not None
    )


def patch_pb1_source(src):
    """Make the pb1-detectron2 0.6 source tree installable and importable on current libraries."""
    setup_py = os.path.join(src, "setup.py")
    with open(setup_py) as f:
        text = f.read()
    text = text.replace("ext_modules=get_extensions(),", "ext_modules=[],")
    text = re.sub(r'\s*"panopticapi @ [^"]*",', "", text)
    text = text.replace('"black==21.4b2"', '"black"')
    if "ext_modules=[]" not in text:
        raise RuntimeError("unexpected pb1-detectron2 setup.py: cannot disable its C++ extension")
    with open(setup_py, "w") as f:
        f.write(text)

    pkg_configs = os.path.join(src, "detectron2", "model_zoo", "configs")
    top_configs = os.path.join(src, "configs")
    if os.path.isdir(pkg_configs) and not os.path.exists(top_configs):
        shutil.copytree(pkg_configs, top_configs)

    n_files = 0
    for path in glob.glob(os.path.join(src, "detectron2", "**", "*.py"), recursive=True):
        with open(path) as f:
            old = f.read()
        new = NUMPY_ALIAS.sub(lambda m: m.group(1), old).replace("Image.LINEAR", "Image.BILINEAR")
        if new != old:
            n_files += 1
            with open(path, "w") as f:
                f.write(new)
    log("patched NumPy/Pillow aliases in %d files" % n_files)

    with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
        f.write(_C_STANDIN)
    # nms_rotated is the one op reached through torch.ops (a bare "no attribute" error): route it
    # through the stand-in so it fails with the same clear message.
    nms_py = os.path.join(src, "detectron2", "layers", "nms.py")
    with open(nms_py) as f:
        text = f.read()
    text = text.replace("torch.ops.detectron2.nms_rotated(", "_C.nms_rotated(")
    text = text.replace("import torch\n", "import torch\n\nfrom detectron2 import _C\n", 1)
    with open(nms_py, "w") as f:
        f.write(text)


def install_pb1_detectron2(venv_python, workdir):
    tmp = os.path.join(workdir, "pip-tmp")
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, TMPDIR=tmp)
    cmd = [
        venv_python,
        "-m",
        "pip",
        "download",
        "--no-clean",
        "--no-deps",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "-d",
        os.path.join(workdir, "dl"),
        FALLBACK_DETECTRON2,
    ]
    cmd += os.environ.get("LIBRA_D2_EXTRA_PIP_ARGS", "").split()
    log("$ " + " ".join(cmd) + "   (expected to end with pip's direct-URL error)")
    subprocess.run(cmd, env=env, capture_output=True, text=True)
    trees = glob.glob(os.path.join(tmp, "pip-*", "pb1-detectron2*", "setup.py"))
    if not trees:
        raise RuntimeError(
            "could not obtain the %s source release (no network access to the package index?)"
            % FALLBACK_DETECTRON2
        )
    src = os.path.join(workdir, "pb1-detectron2")
    shutil.copytree(os.path.dirname(trees[0]), src)
    patch_pb1_source(src)
    pip(venv_python, "install", "--no-deps", "--no-build-isolation", src)


def source_digest(path):
    """Content hash of a local Detectron2 source: an archive file, or a checkout's tracked tree."""
    h = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:20]
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in (".git", "build", "__pycache__") and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            if name.endswith((".so", ".pyc")):
                continue
            full = os.path.join(top, name)
            h.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:20]


def cached_wheel_dir(venv_python, d2_spec):
    """The wheel-cache folder for a local Detectron2 source, or None (remote spec / cache off)."""
    cache_root = os.environ.get(
        "LIBRA_D2_WHEEL_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "libra_d2", "wheels"),
    )
    if not cache_root or not os.path.exists(d2_spec):
        return None
    build_env = probe(
        venv_python,
        "import sys, torch; print('py%d%d-torch%s' % (sys.version_info[:2]"
        " + (torch.__version__,)))",
    )
    return os.path.join(cache_root, "detectron2-%s-%s" % (source_digest(d2_spec), build_env))


def install_official_detectron2(venv_python, d2_spec):
    """pip-install the official source (it builds the C++/CUDA extension: needs a compiler, and
    CUDA for the GPU ops). A local source is built into a wheel once and reused from the cache."""
    wheel_dir = cached_wheel_dir(venv_python, d2_spec)
    if wheel_dir is None:
        pip(venv_python, "install", "--no-build-isolation", d2_spec)
        return
    wheels = glob.glob(os.path.join(wheel_dir, "detectron2-*.whl"))
    if wheels:
        log("reusing the Detectron2 wheel built earlier from this source: %s" % wheels[0])
    else:
        log(
            "building Detectron2 with its compiled ops from %s (about 10-15 minutes on 2 cores; "
            "cached in %s)" % (d2_spec, wheel_dir)
        )
        partial = wheel_dir + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        pip(venv_python, "wheel", "--no-deps", "--no-build-isolation", "-w", partial, d2_spec)
        os.replace(partial, wheel_dir)  # a killed build leaves no wheel that looks complete
        wheels = glob.glob(os.path.join(wheel_dir, "detectron2-*.whl"))
    pip(venv_python, "install", "--no-deps", "--force-reinstall", wheels[0])


def install_detectron2(venv_python, d2_spec):
    allow_fallback = os.environ.get("DETECTRON2_FALLBACK", "1") != "0"
    if d2_spec:
        try:
            install_official_detectron2(venv_python, d2_spec)
            return "official (%s)" % d2_spec
        except subprocess.CalledProcessError:
            if not allow_fallback:
                raise SystemExit(
                    "[install_env] official Detectron2 (%s) could not be installed, and "
                    "DETECTRON2_FALLBACK=0 forbids the 0.6 fallback" % d2_spec
                )
            log(
                "official Detectron2 (%s) could not be installed; falling back to %s"
                % (d2_spec, FALLBACK_DETECTRON2)
            )
    elif not allow_fallback:
        raise SystemExit("[install_env] DETECTRON2_FALLBACK=0 needs a DETECTRON2_SPEC")
    with tempfile.TemporaryDirectory(prefix="libra_d2_d2_") as workdir:
        install_pb1_detectron2(venv_python, workdir)
    return FALLBACK_DETECTRON2 + " (no compiled ops)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default=os.path.join(REPO_ROOT, ".venv"))
    parser.add_argument("--force", action="store_true", help="rebuild even if complete")
    args = parser.parse_args()

    torch_spec = os.environ.get("TORCH_SPEC", DEFAULT_TORCH_SPEC)
    d2_spec = os.environ.get("DETECTRON2_SPEC", DEFAULT_DETECTRON2_SPEC)
    venv_python = os.path.join(args.venv, "bin", "python")
    stamp_path = os.path.join(args.venv, STAMP_NAME)
    expected = fingerprint(torch_spec, d2_spec)

    if not args.force and environment_complete(venv_python, stamp_path, expected):
        log("environment %s is complete" % args.venv)
        return 0
    if os.path.exists(stamp_path):
        os.remove(stamp_path)  # an interrupted rebuild must not look complete
    if not os.path.exists(venv_python):
        run([sys.executable, "-m", "venv", args.venv])

    pip(venv_python, "install", "-q", "--upgrade", "pip", "setuptools<81", "wheel")
    if probe(venv_python, "import torch, torchvision") is None or args.force:
        pip(venv_python, "install", *torch_spec.split())
    pip(venv_python, "install", "-q", *BASE_PACKAGES)

    d2 = probe(venv_python, "import detectron2, os; print(os.path.dirname(detectron2.__file__))")
    if d2 is None or args.force:
        d2 = install_detectron2(venv_python, d2_spec)
    log("detectron2: %s" % d2)

    pip(venv_python, "install", "-q", "--no-deps", "--no-build-isolation", "-e", REPO_ROOT)
    check = "import torch, detectron2, libra_d2; print(torch.__version__, detectron2.__version__)"
    versions = probe(venv_python, check)
    if versions is None:
        subprocess.call([venv_python, "-c", check])  # show the traceback
        raise SystemExit("[install_env] the environment does not import; see the error above")
    with open(stamp_path, "w") as f:
        json.dump(expected, f)
    log("environment ready: torch, detectron2 = %s" % versions)
    probes = probe(
        venv_python,
        "from libra_d2.utils.compat import feature_report as r; "
        "print(', '.join('%s=%s' % kv for kv in r().items()))",
    )
    log("libra_d2 feature probes: %s" % probes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
