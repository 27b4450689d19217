from .hooks import TRAINER_HOOK_REGISTRY, ExactResume, ProgressBar, build_method_hooks
from . import gradient_annealing  # noqa: F401,E402  (registers RGA in TRAINER_HOOK_REGISTRY)
from . import loce  # noqa: F401,E402  (registers LOCE's fine-tune / feature-memory hooks)
from .launch import launch, launch_from_args
from .setup import (
    ConfigError,
    DatasetError,
    argument_parser,
    check_datasets,
    merge_cfg_checked,
    register_datasets,
    setup_cfg,
)
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
    "argument_parser",
    "build_method_hooks",
    "check_datasets",
    "launch",
    "launch_from_args",
    "merge_cfg_checked",
    "register_datasets",
    "setup_cfg",
]
