from .gradient_clipping import (
    CLIP_TYPES,
    add_gradient_clipping_from_train_cfg,
    build_optimizer_with_clipping,
    clip_gradients_,
    clip_gradients_cfg,
    maybe_add_gradient_clipping,
)

__all__ = [
    "CLIP_TYPES",
    "add_gradient_clipping_from_train_cfg",
    "build_optimizer_with_clipping",
    "clip_gradients_",
    "clip_gradients_cfg",
    "maybe_add_gradient_clipping",
]
