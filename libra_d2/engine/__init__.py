from .hooks import TRAINER_HOOK_REGISTRY, ExactResume, ProgressBar, build_method_hooks
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
    "TRAINER_HOOK_REGISTRY",
    "build_method_hooks",
    "check_datasets",
    "launch",
    "merge_cfg_checked",
    "setup_cfg",
]
