"""The LT-Shapes table of projects/RGA_PRM/README.md: the tiny Faster R-CNN baseline, R-CNN
Gradient Annealing (constant lambda = 7 and annealed 7 -> 1), Parallel R-CNN Modules (each module
evaluated alone and the ensemble), and RGA + PRM.
Run: python dev/run_experiments.py projects/RGA_PRM/experiments.py

The single-module PRM rows evaluate the ensemble row's checkpoint with MODEL.PRM.TEST_HEAD set
(an inference option), so PRM is trained once.
"""
BASE = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny.yaml"
RGA = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga.yaml"
PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_prm.yaml"
RGA_PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml"
OUTPUT_ROOT = "output/rga_prm"
COLUMNS = ("AP", "AP50", "AP75")
ENSEMBLE = OUTPUT_ROOT + "/prm_ensemble/model_final.pth"
ROWS = [
    # the tiny baseline is deterministic: evaluate the Libra R-CNN table's baseline checkpoint
    ("baseline", BASE, [], {"weights": "output/libra_rcnn/baseline/model_final.pth"}),
    ("constant lambda 7", RGA, ["MODEL.RGA.CONSTANT", "True"]),
    ("RGA (lambda 7 to 1)", RGA, []),
    ("PRM ensemble", PRM, []),
    # each module of the same PRM model evaluated alone (an inference option)
    ("PRM module 0.5 alone", PRM, ["MODEL.PRM.TEST_HEAD", "0"], {"weights": ENSEMBLE}),
    ("PRM module 0.1 alone", PRM, ["MODEL.PRM.TEST_HEAD", "1"], {"weights": ENSEMBLE}),
    ("RGA + PRM", RGA_PRM, []),
]
