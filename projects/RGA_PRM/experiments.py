"""The LT-Shapes table of projects/RGA_PRM/README.md: the tiny Faster R-CNN baseline, R-CNN
Gradient Annealing (constant lambda = 7 and annealed 7 -> 1), Parallel R-CNN Modules (each module
evaluated alone and the ensemble), and RGA + PRM.
Run: python dev/run_experiments.py projects/RGA_PRM/experiments.py

The three PRM rows train the same config with the same seed (training is deterministic on one CPU
process) and differ only in MODEL.PRM.TEST_HEAD, an inference option. To skip the two repeated
trainings, evaluate the ensemble row's checkpoint instead:
    python projects/train_net.py --config-file configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml \
        --eval-only MODEL.WEIGHTS output/rga_prm/prm_ensemble/model_final.pth MODEL.PRM.TEST_HEAD 0
"""
BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga.yaml"
PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
RGA_PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/rga_prm"
COLUMNS = ("AP", "AP50", "AP75")
ROWS = [
    ("baseline", BASE, []),
    ("constant lambda 7", RGA, ["MODEL.RGA.CONSTANT", "True"]),
    ("RGA (lambda 7 to 1)", RGA, []),
    ("PRM module 0.5 alone", PRM, ["MODEL.PRM.TEST_HEAD", "0"]),
    ("PRM module 0.1 alone", PRM, ["MODEL.PRM.TEST_HEAD", "1"]),
    ("PRM ensemble", PRM, []),
    ("RGA + PRM", RGA_PRM, []),
]
