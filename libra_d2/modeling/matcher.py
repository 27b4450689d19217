"""Matchers that also report every proposal's max IoU, and a registry for matchers.

``MaxIoUMatcher`` is Detectron2's :class:`~detectron2.modeling.matcher.Matcher` unchanged for
existing callers (``matcher(match_quality_matrix) -> (matches, match_labels)``) plus
:meth:`MaxIoUMatcher.match_with_quality`, which also returns the max match quality (IoU) of
every prediction -- what IoU-balanced sampling bins on.

``MATCHER_REGISTRY`` is generic: an entry is a class constructed with keyword arguments
(``build_matcher(name, **kwargs)``); other assigners (e.g. ATSS) can be registered there.
"""

from typing import NamedTuple

import torch
from detectron2.modeling.matcher import Matcher
from detectron2.utils.registry import Registry

__all__ = ["MATCHER_REGISTRY", "MatchResult", "MaxIoUMatcher", "build_matcher"]

MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = """
Registry for matchers / assigners: classes constructed with keyword arguments, called on an
M x N match quality matrix (M ground truths, N predictions).
"""


class MatchResult(NamedTuple):
    """Output of :meth:`MaxIoUMatcher.match_with_quality`; all tensors have length N."""

    matches: torch.Tensor  # int64: index of the matched GT in [0, M) (0 when M == 0)
    match_labels: torch.Tensor  # int8: -1 ignore, 0 negative, 1 positive
    max_ious: torch.Tensor  # float: max match quality over the GTs (0 when M == 0)


@MATCHER_REGISTRY.register()
class MaxIoUMatcher(Matcher):
    """Detectron2's max-IoU :class:`Matcher` that can also return each prediction's max IoU.

    Constructor arguments are Detectron2's (``thresholds``, ``labels``,
    ``allow_low_quality_matches``). ``__call__`` is Detectron2's, untouched.
    """

    def match_with_quality(self, match_quality_matrix: torch.Tensor) -> MatchResult:
        """Like ``__call__``, plus ``max_ious = match_quality_matrix.max(dim=0).values``.

        ``max_ious`` is the raw max quality: predictions promoted to positives by
        ``allow_low_quality_matches`` keep their (low) IoU. With no ground truth (M == 0) every
        prediction is labelled ``labels[0]`` (background by default) and has max IoU 0.
        """
        matches, match_labels = self(match_quality_matrix)
        if match_quality_matrix.shape[0] == 0 or match_quality_matrix.shape[1] == 0:
            max_ious = match_quality_matrix.new_zeros((match_quality_matrix.shape[1],))
        else:
            max_ious = match_quality_matrix.max(dim=0).values
        return MatchResult(matches, match_labels, max_ious)


def build_matcher(name: str, **kwargs):
    """Construct the matcher registered as ``name`` with keyword arguments ``kwargs``."""
    if name not in MATCHER_REGISTRY:
        registered = sorted(k for k, _ in MATCHER_REGISTRY)
        raise KeyError(f"Unknown matcher {name!r}; registered matchers: {registered}")
    return MATCHER_REGISTRY.get(name)(**kwargs)
