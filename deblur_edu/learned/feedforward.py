r"""A feedforward comparator for the DEQ: one CNN pass on a Tikhonov estimate.

Chapter 4 asks what the equilibrium buys. The honest comparison is a network of about the
same size that sees the same information but is applied once (Zhang, Zuo, Chen, Meng &
Zhang, "Beyond a Gaussian denoiser: residual learning of deep CNN for image denoising" —
DnCNN — applied after a classical deconvolution, as in Schuler et al. 2013 and Zhang et al.
2017's IRCNN baselines):

    x₀ = ȳ − P Aᵀ(A ȳ − y)          the border-aware Tikhonov start (the DEQ's x₀)
    x̂  = x₀ + cnn(x₀)               residual learning: the CNN predicts the correction

The CNN is :func:`~deblur_edu.learned.rgdn.small_cnn` (conv3×3 + ReLU, no normalisation);
with the DEQ's width and depth it has the same number of weights as the DEQ's denoiser.
The blur enters once, through ``x₀``; a DEQ applies it at every iteration.
"""

from __future__ import annotations

import torch
from torch import nn

from ..classical.wiener import tikhonov_start
from ..physics import Blur, crop
from ..checks import check_channels, check_model_dtype, check_problem
from .rgdn import small_cnn


class TikhonovCNN(nn.Module):
    """``x̂ = x₀ + cnn(x₀)`` with ``x₀`` the border-aware Tikhonov start, cropped to ``y``.

    Args:
        channels, features, depth: the CNN.
        balance: β of the Tikhonov start ``P = (KᵀK + βDᵀD)⁻¹``.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> net = TikhonovCNN(features=8, depth=3)
        >>> net(torch.rand(2, 1, 32, 32), gaussian(7, 1.0)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, channels: int = 1, features: int = 32, depth: int = 5, balance: float = 1e-2):
        super().__init__()
        self.channels, self.balance = channels, balance
        self.cnn = small_cnn(channels, features, depth)

    #: whether the model uses the noise level σ it is given (this one ignores it)
    uses_sigma = False

    def forward(self, y: torch.Tensor, k: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (B, C, H, W) given kernels ``k`` (B or 1, 1, h, w); ``sigma``, the noise
        level, is accepted like every non-blind method's and ignored (``uses_sigma`` is False)."""
        y, k = check_problem(y, k)
        check_channels(y, self.channels, "TikhonovCNN")
        check_model_dtype(y, self, "TikhonovCNN")
        A = Blur(k, "valid", check_inputs=False)
        x0 = tikhonov_start(A, y, self.balance)
        return crop(x0 + self.cnn(x0), A.pads)
