"""The math of the five papers as small pure functions and thin modules."""

from .balanced_l1 import BalancedL1Loss, balanced_l1_b, balanced_l1_loss
from .class_reweighting import (
    BCRSigmoidCELoss,
    bcr_sigmoid_ce_loss,
    bucket_indices,
    bucketed_class_weights,
    class_frequencies,
)
from .equalized_focal_loss import (
    EFLClassificationLoss,
    EqualizedFocalLoss,
    accumulate_gradient_statistics,
    efl_focusing_factors,
    efl_logit_grad,
    equalized_focal_loss,
)
from .equilibrium_loss import adjust_logits, equilibrium_loss
from .gradient_reweighting import (
    LGRCrossEntropyLoss,
    LGRL1Loss,
    lgr_cross_entropy,
    lgr_l1_loss,
    lgr_weight,
)
from .non_local import NonLocal2d, embedded_gaussian_attention
from .scale_gradient import scale_gradient

__all__ = [k for k in globals() if not k.startswith("_")]
