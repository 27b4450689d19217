"""Helpers shared by the dev/benchmark_*.py scripts: the timer, the device option and the report
writer."""

import os
import time

import torch


def timed(fn, sync=lambda: None):
    """Seconds ``fn()`` takes (``sync`` waits for asynchronous devices before the clock stops)."""
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def add_device_argument(parser):
    """``--device cpu|cuda``: where the models run (CUDA timings wait for the device each time)."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def device_sync(device):
    """The ``sync`` argument of :func:`timed` for ``device``."""
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def machine_line(device, extra=""):
    """The first line of a benchmark report: the device, CPU threads, torch version."""
    dev = torch.cuda.get_device_name() if str(device).startswith("cuda") else "CPU"
    return "Machine: {} ({} CPU threads), torch {}{}.".format(
        dev, torch.get_num_threads(), torch.__version__, extra
    )


def write_report(text, output, title):
    """Print ``text`` and, if ``output`` is set, write it as a markdown file headed ``# title``."""
    print(text)
    if output:
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        with open(output, "w") as f:
            f.write("# {}\n\n{}\n".format(title, text))
