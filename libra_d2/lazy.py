"""Helpers that rewrite Detectron2 lazy configs (``LazyCall`` trees) into libra_d2 models."""
import copy
from typing import Sequence

__all__ = ["parallel_roi_heads"]


def parallel_roi_heads(roi_heads, positive_fractions: Sequence[float] = (0.5, 0.1), test_head: int = -1):
    """Turn the lazy config of a ``StandardROIHeads`` (its ``box_head`` / ``box_predictor``) into
    ``ParallelROIHeads`` with one copy of the box head + predictor per positive fraction (PRM), in
    place: the predictors become ``LibraFastRCNNOutputLayers`` and the proposal matcher a
    ``MaxIoUMatcher`` (the Libra sampling API). Returns ``roi_heads``.
    ``roi_heads.test_head``: -1 ensemble, k module k alone."""
    from .modeling.matcher import MaxIoUMatcher
    from .modeling.roi_heads import LibraFastRCNNOutputLayers, ParallelROIHeads

    fractions = [float(f) for f in positive_fractions]
    box_head, box_predictor = roi_heads.box_head, roi_heads.box_predictor
    box_predictor._target_ = LibraFastRCNNOutputLayers
    # "${..num_classes}" in Detectron2's configs is relative to roi_heads: not valid inside a list
    box_predictor.num_classes = roi_heads.num_classes
    del roi_heads.box_head
    del roi_heads.box_predictor
    roi_heads._target_ = ParallelROIHeads
    roi_heads.proposal_matcher._target_ = MaxIoUMatcher
    roi_heads.box_heads = [copy.deepcopy(box_head) for _ in fractions]
    roi_heads.box_predictors = [copy.deepcopy(box_predictor) for _ in fractions]
    roi_heads.positive_fractions = fractions
    roi_heads.test_head = int(test_head)
    return roi_heads
