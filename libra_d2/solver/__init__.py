from .gradient_clipping import add_gradient_clipping_from_train_cfg, clip_gradients_cfg

__all__ = ["add_gradient_clipping_from_train_cfg", "clip_gradients_cfg"]
