"""Diagnosis of a config's imbalances on its own data (``projects/diagnose.py``): one module per
imbalance of the Libra R-CNN paper's taxonomy, plus the objective statistics of EFL and LOCE.

* :mod:`.class_imbalance`: images and instances per class, frequency groups, RFS repeat factors;
* :mod:`.sample_imbalance`: the IoU of the negatives the configured RoI sampler picks vs random;
* :mod:`.objective_imbalance`: per-class positive / negative classifier gradients and mean scores;
* :mod:`.feature_imbalance`: the energy of each pyramid level before and after BFP;
* :mod:`.report`: the Markdown page and its figures.
"""

from .class_imbalance import class_imbalance
from .feature_imbalance import level_energy, pyramid_energy, relative_change
from .objective_imbalance import sigmoid_gradient_statistics, softmax_gradient_statistics
from .report import diagnose, write_report
from .sample_imbalance import hard_fraction, negative_ious

__all__ = [
    "class_imbalance",
    "diagnose",
    "hard_fraction",
    "level_energy",
    "negative_ious",
    "pyramid_energy",
    "relative_change",
    "sigmoid_gradient_statistics",
    "softmax_gradient_statistics",
    "write_report",
]
