"""Train/test data loaders: Detectron2's, with a resumable sampler and record-naming errors."""

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler

from .dataset_check import apply_box_policy
from .dataset_mapper import CheckedDatasetMapper
from .resumable_sampler import ResumableSampler

__all__ = ["build_resumable_train_loader", "resumable_train_loader", "build_test_loader"]


def resumable_train_loader(
    dataset, *, mapper, sampler=None, repeat_threshold=None, bad_boxes="clip", **kwargs
):
    """``build_detection_train_loader(dataset, mapper=..., sampler=..., **kwargs)`` whose sampler is
    wrapped in a :class:`ResumableSampler`, reachable as ``loader.resumable_sampler`` (the trainers'
    :class:`~libra_d2.engine.ExactResume` hook sets its start). Usable from lazy configs.

    ``repeat_threshold`` (with no ``sampler``): repeat-factor sampling, Detectron2's
    ``RepeatFactorTrainingSampler`` with the factors of ``dataset`` (a list of dataset dicts) at
    that
    threshold, as ``DATALOADER.SAMPLER_TRAIN "RepeatFactorTrainingSampler"`` + ``REPEAT_THRESHOLD``;
    None or 0: off (``TrainingSampler``).

    ``bad_boxes``: what happens to degenerate and out-of-image boxes (``DATALOADER.BAD_BOXES``,
    see :mod:`libra_d2.data.dataset_check`)."""
    if sampler is not None and repeat_threshold:
        raise ValueError(
            "resumable_train_loader: pass either sampler or repeat_threshold, not both"
        )
    if isinstance(dataset, list):
        dataset = apply_box_policy(dataset, bad_boxes)
    if sampler is None and repeat_threshold:
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset, float(repeat_threshold)
        )
        sampler = RepeatFactorTrainingSampler(factors)
    elif sampler is None:
        sampler = TrainingSampler(len(dataset))
    sampler = ResumableSampler(sampler)
    loader = build_detection_train_loader(dataset, mapper=mapper, sampler=sampler, **kwargs)
    loader.resumable_sampler = sampler
    return loader


def build_resumable_train_loader(cfg, mapper=None):
    """The train loader Detectron2 builds from ``cfg`` (``DATALOADER.SAMPLER_TRAIN``:
    TrainingSampler or RepeatFactorTrainingSampler, aspect-ratio grouping, workers), resumable, with
    a mapper whose errors name the record."""
    if mapper is None:
        mapper = CheckedDatasetMapper(cfg, is_train=True)
    # the arguments Detectron2's configurable loader derives from cfg (its public from_config)
    kwargs = build_detection_train_loader.from_config(cfg, mapper=mapper)
    return resumable_train_loader(**kwargs, bad_boxes=cfg.DATALOADER.get("BAD_BOXES", "clip"))


def build_test_loader(cfg, dataset_name, mapper=None):
    if mapper is None:
        mapper = CheckedDatasetMapper(cfg, is_train=False)
    return build_detection_test_loader(cfg, dataset_name, mapper=mapper)
