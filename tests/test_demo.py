"""projects/demo.py: a config and weights on a folder of images and on a video, pictures written
with Detectron2's Visualizer (CPU)."""

import os

import cv2
import numpy as np

TINY = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
# an untrained model scores every class near 1/33: threshold 0 keeps detections to draw
OPTS = ["--confidence-threshold", "0.0", "MODEL.WEIGHTS", "", "INPUT.MIN_SIZE_TEST", "64"]


def _images(folder, n=3, size=(48, 64)):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(n):
        cv2.imwrite(
            os.path.join(folder, "{}.png".format(i)), rng.randint(0, 255, (*size, 3), np.uint8)
        )
    return folder


def test_demo_on_a_folder_and_a_video(run_script, tmp_path):
    folder = _images(str(tmp_path / "images"))
    out = tmp_path / "pictures"
    proc = run_script(
        "projects/demo.py", "--config-file", TINY, "--input", folder, "--output", str(out), *OPTS
    )
    written = sorted(os.listdir(out))
    assert written == ["0.png", "1.png", "2.png"]
    picture = cv2.imread(str(out / "0.png"))
    assert picture.shape == (48, 64, 3)
    original = cv2.imread(os.path.join(folder, "0.png"))
    assert not np.array_equal(picture, original)  # boxes were drawn
    assert "detections" in proc.stdout

    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for i in range(3):
        writer.write(cv2.imread(os.path.join(folder, "{}.png".format(i))))
    writer.release()
    result = tmp_path / "clip_out.avi"
    run_script(
        "projects/demo.py",
        "--config-file",
        TINY,
        "--video-input",
        video,
        "--output",
        str(result),
        *OPTS,
    )
    capture = cv2.VideoCapture(str(result))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 64


def test_demo_refuses_missing_input(run_script, tmp_path):
    proc = run_script(
        "projects/demo.py",
        "--config-file",
        TINY,
        "--input",
        str(tmp_path / "nothing_here"),
        "--output",
        str(tmp_path / "out"),
        *OPTS,
        check=False,
    )
    assert proc.returncode != 0 and "no images found" in proc.stdout
    assert not (tmp_path / "out").exists()
