"""deblur_edu — image deblurring from first principles to current research.

One folder per part of the architecture, imports flowing one way: :mod:`checks`,
:mod:`runtime` → :mod:`kernels`, :mod:`metrics` → :mod:`physics` (the blur operator), :mod:`data`
→ :mod:`synthesis` (training batches), :mod:`classical` → :mod:`learned` → :mod:`zoo` (named
models, checkpoints) → :mod:`train` → :mod:`bench` → :mod:`experiments`, :mod:`course`, :mod:`show`.
"""

from . import classical, data, kernels, metrics, physics
from .physics import Blur, add_noise, blur, psf2otf

__version__ = "0.1.0"
__all__ = ["Blur", "add_noise", "blur", "psf2otf", "classical", "data", "kernels", "metrics", "physics"]
