"""Helpers shared by the dev/benchmark_*.py scripts: one timer and one report writer."""
import os
import time


def timed(fn, sync=lambda: None):
    """Seconds ``fn()`` takes (``sync`` waits for asynchronous devices before the clock stops)."""
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def write_report(text, output, title):
    """Print ``text`` and, if ``output`` is set, write it as a markdown file headed ``# title``."""
    print(text)
    if output:
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        with open(output, "w") as f:
            f.write("# {}\n\n{}\n".format(title, text))
