"""How good is a deblurred image? Full-reference fidelity (:mod:`.fidelity`: PSNR, SSIM), a
no-reference blur measure (:mod:`.sharpness`) and a learned perceptual distance (:mod:`.lpips`,
optional: it needs local weight files), and the spread of a paired difference (:mod:`.spread`). Pure functions of tensors, batched and differentiable;
any layer of the library may use them (the solvers record their PSNR per iteration)."""

from .fidelity import psnr, ssim
from .sharpness import blur_effect
from .spread import Spread, paired_bootstrap

__all__ = ["Spread", "blur_effect", "paired_bootstrap", "psnr", "ssim"]
