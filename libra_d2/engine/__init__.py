from .hooks import ExactResume, ProgressBar
from .launch import launch
from .setup import ConfigError, DatasetError, check_datasets, merge_cfg_checked, setup_cfg
from .train_loop import LibraTrainLoop
from .trainer import LibraTrainer

__all__ = [
    "ConfigError",
    "DatasetError",
    "ExactResume",
    "LibraTrainLoop",
    "LibraTrainer",
    "ProgressBar",
    "check_datasets",
    "launch",
    "merge_cfg_checked",
    "setup_cfg",
]
