#!/usr/bin/env python
"""Run a trained libra_d2 / Detectron2 model on images, a folder or a video and write the pictures
with Detectron2's ``Visualizer``, as Detectron2's ``demo/demo.py`` does.

    python projects/demo.py --config-file output/run/config.yaml --input photos/*.jpg \
        --output output/demo MODEL.WEIGHTS output/run/model_final.pth
    python projects/demo.py --config-file ... --input photos/ --output output/demo ...
    python projects/demo.py --config-file ... --video-input clip.mp4 --output out/clip.mp4 ...

Class names come from the first test (else training) dataset's metadata; ``--dataset
NAME:JSON:IMAGE_ROOT`` registers a user's dataset for them, as in ``train_net.py``. It runs on
``MODEL.DEVICE`` (``cuda`` falls back to ``cpu`` without CUDA) and shows a progress bar over the
images or frames.
"""

import argparse
import glob
import logging
import os

import libra_d2  # noqa: F401  isort: skip (first: registers components, quiets warnings)
import cv2
import tqdm
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from libra_d2.config import add_libra_config
from libra_d2.engine.setup import (
    add_dataset_argument,
    merge_cfg_checked,
    register_datasets,
    use_cpu_without_cuda,
)

logger = logging.getLogger("libra_d2.demo")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", help="images, globs or folders of images")
    parser.add_argument("--video-input", help="a video file (read with OpenCV)")
    parser.add_argument(
        "--output",
        required=True,
        help="a folder for the pictures; for a video, the output video file (or a folder)",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    add_dataset_argument(parser, "register a COCO- or LVIS-format dataset (for its class names)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (KEY VALUE ...)")
    return parser


def setup_cfg(args):
    cfg = get_cfg()
    add_libra_config(cfg)
    merge_cfg_checked(cfg, args.config_file, args.opts)
    threshold = args.confidence_threshold
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = threshold
    if "FCOS" in cfg.MODEL:
        cfg.MODEL.FCOS.SCORE_THRESH_TEST = threshold
    use_cpu_without_cuda(cfg)
    cfg.freeze()
    return cfg


def expand_inputs(inputs):
    """Image paths from paths, globs and folders (sorted, each once); clear error when empty."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, f)
                for f in os.listdir(item)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        else:
            found = sorted(glob.glob(os.path.expanduser(item)))
        if not found:
            raise FileNotFoundError("--input {}: no images found".format(item))
        paths += [p for p in found if p not in paths]
    return paths


def metadata_of(cfg):
    names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
    return MetadataCatalog.get(names[0] if names else "__unused")


def visualize_image(predictor, metadata, image_bgr):
    """The predictions on one BGR image and the picture (RGB) Detectron2's Visualizer draws."""
    predictions = predictor(image_bgr)
    visualizer = Visualizer(image_bgr[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
    if "instances" in predictions:
        picture = visualizer.draw_instance_predictions(predictions["instances"].to("cpu"))
    else:  # a proposal network: its boxes
        proposals = predictions["proposals"].to("cpu")[:100]
        picture = visualizer.overlay_instances(boxes=proposals.proposal_boxes)
    return predictions, picture.get_image()


def run_images(predictor, metadata, paths, output):
    os.makedirs(output, exist_ok=True)
    written = []
    for path in tqdm.tqdm(paths, desc="images", disable=len(paths) < 2):
        image = read_image(path, format="BGR")
        predictions, picture = visualize_image(predictor, metadata, image)
        found = len(predictions["instances"]) if "instances" in predictions else 0
        logger.info("%s: %d detections", path, found)
        out = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
        cv2.imwrite(out, picture[:, :, ::-1])
        written.append(out)
    return written


def run_video(predictor, metadata, video_path, output):
    video = cv2.VideoCapture(video_path)
    if not video.isOpened():
        raise OSError("--video-input {}: OpenCV cannot open it".format(video_path))
    width = int(video.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = video.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if os.path.isdir(output) or not os.path.splitext(output)[1]:
        os.makedirs(output, exist_ok=True)
        output = os.path.join(output, os.path.splitext(os.path.basename(video_path))[0] + ".mp4")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if output.lower().endswith(".avi") else "mp4v"))
    writer = cv2.VideoWriter(output, fourcc, fps, (width, height), True)
    if not writer.isOpened():
        raise OSError("cannot write {} with OpenCV (try an .avi output)".format(output))
    visualizer = VideoVisualizer(metadata, ColorMode.IMAGE)
    count = 0
    with tqdm.tqdm(total=frames, desc="frames") as progress:
        while True:
            ok, frame = video.read()
            if not ok:
                break
            predictions = predictor(frame)
            if "instances" not in predictions:
                raise ValueError("--video-input needs a detector; a proposal network has none")
            picture = visualizer.draw_instance_predictions(
                frame[:, :, ::-1], predictions["instances"].to("cpu")
            )
            writer.write(picture.get_image()[:, :, ::-1])
            count += 1
            progress.update(1)
    video.release()
    writer.release()
    logger.info("%s: %d frames written to %s", video_path, count, output)
    return output, count


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="libra_d2")
    setup_logger(name="fvcore")
    if bool(args.input) == bool(args.video_input):
        raise SystemExit("give either --input (images / folders) or --video-input (a video)")
    register_datasets(args)
    cfg = setup_cfg(args)
    paths = expand_inputs(args.input) if args.input else None
    predictor = DefaultPredictor(cfg)
    metadata = metadata_of(cfg)
    logger.info("Model on %s; classes from %r", cfg.MODEL.DEVICE, metadata.name)
    if paths is not None:
        return run_images(predictor, metadata, paths, args.output)
    return run_video(predictor, metadata, args.video_input, args.output)


if __name__ == "__main__":
    main()
