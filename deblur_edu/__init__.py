"""deblur_edu — image deblurring from first principles to current research.

Modules, in the order data flows through them: :mod:`kernels` and :mod:`data` →
:mod:`physics` (the blur operator) → :mod:`classical` (and, later, learned methods) →
:mod:`metrics` → :mod:`bench`.
"""

from . import classical, data, kernels, metrics, physics
from .physics import Blur, add_noise, blur, psf2otf

__version__ = "0.1.0"
__all__ = ["Blur", "add_noise", "blur", "psf2otf", "classical", "data", "kernels", "metrics", "physics"]
