"""dev/plot_efl_grad_ratio.py: EFL's logged g_j and gamma_j per frequency group (metrics.json)."""

import json
import math
import runpy

plot = runpy.run_path("dev/plot_efl_grad_ratio.py")


def _write_metrics(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_series_summaries_come_from_the_logged_groups(tmp_path):
    _write_metrics(
        tmp_path / "metrics.json",
        [
            {"iteration": 0, "efl/grad_ratio/r": 0.2, "efl/gamma/r": 8.4, "efl/grad_ratio/f": 1.0},
            {"iteration": 19, "total_loss": 1.0},  # a record without EFL statistics
            {"iteration": 20, "efl/grad_ratio/r": 0.95, "efl/gamma/r": 2.4},
            {"iteration": 40, "efl/grad_ratio/r": 0.8, "efl/gamma/r": 3.6},
        ],
    )
    statistics = plot["read_efl_statistics"](str(tmp_path))
    ratio, gamma = statistics["grad_ratio"], statistics["gamma"]
    assert ratio["r"] == [(0, 0.2), (20, 0.95), (40, 0.8)]
    assert ratio["f"] == [(0, 1.0)] and ratio["c"] == []
    assert gamma["r"] == [(0, 8.4), (20, 2.4), (40, 3.6)]
    assert math.isclose(plot["below_share"](ratio["r"]), 2 / 3)
    assert math.isclose(plot["mean_value"](gamma["r"]), 14.4 / 3)
    assert math.isnan(plot["mean_value"](ratio["c"]))
