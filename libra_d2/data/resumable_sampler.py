"""A sampler wrapper that can start part-way into its stream, so that ``--resume`` sees the data the
interrupted run would have seen next."""

import itertools

from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    """Wraps an infinite Detectron2 training sampler (``TrainingSampler``,
    ``RepeatFactorTrainingSampler``, ...) and skips the first ``start`` indices of this process's
    stream. The skip is read lazily, when iteration begins, so it can be set after the data loader
    was built (the trainer sets it when it resumes)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.start = 0

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.start, None)
