"""libra_d2: balanced learning for object detection, as Detectron2 components.

Importing this package registers every component in Detectron2's registries (backbones,
meta-architectures, ROI heads, proposal generators) and the LT-Shapes datasets, and makes LVIS
evaluation work on current NumPy.
"""

import warnings

# Detectron2 0.6 decorates functions with torch.jit.script at import time and imports pkg_resources;
# current torch/setuptools warn about both on every import. Nothing a user can act on.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings(
    "ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning
)

from .config import add_libra_config  # noqa: E402
from . import data  # noqa: F401,E402  (registers datasets)
from . import evaluation  # noqa: F401,E402  (LVIS on current NumPy)
from . import modeling  # noqa: F401,E402  (registers models)
from . import checkpoint  # noqa: F401,E402  (the libra_d2:// weights paths)

__version__ = "0.1.0"
__all__ = ["add_libra_config"]
