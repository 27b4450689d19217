"""dev/clip_activity.py: how often and how hard the clip acted, from a run's metrics.json."""

import json
import runpy

clip_activity = runpy.run_path("dev/clip_activity.py")["clip_activity"]


def test_clip_activity_counts_clipped_windows(tmp_path):
    rows = [
        {"iteration": 19, "clip/total_norm": 30.0, "clip/clipped_fraction": 1.0},
        {"iteration": 39, "clip/total_norm": 12.0, "clip/clipped_fraction": 1.0},
        {"iteration": 59, "clip/total_norm": 4.0, "clip/clipped_fraction": 0.0},
        {"iteration": 60, "bbox/AP": 10.0},
    ]  # an evaluation record: no clip statistics
    path = tmp_path / "metrics.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert clip_activity(str(path)) == {
        "windows": 3,
        "clipped_windows": 2,
        "last_clipped_iter": 39,
        "largest_norm": 30.0,
        "norm": "clip/total_norm",
    }
