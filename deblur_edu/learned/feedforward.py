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

With ``prior="unet"`` the network is the comparator of the DEQ's hqs form: that DEQ's
denoiser (:class:`~deblur_edu.learned.GaussianDenoiser`, started from chapter 2's pretrained
weights by the training config), applied *once* to ``x₀`` at a learned level ``s(σ) = a σ + b``,

    x̂ = D_θ(x₀, s(σ)),

so the two differ only in the equilibrium. It is told σ (``uses_sigma``); the CNN is not.
"""

from __future__ import annotations

import torch
from torch import nn

from ..classical.wiener import tikhonov_start
from ..physics import Blur, crop
from ..checks import check_channels, check_model_dtype, check_problem
from .denoiser import GaussianDenoiser, denoising_level, noise_per_image
from .rgdn import small_cnn

PRIORS = ("cnn", "unet")


class TikhonovCNN(nn.Module):
    """``x̂ = x₀ + cnn(x₀)`` (or ``D_θ(x₀, s(σ))``) with ``x₀`` the border-aware Tikhonov start, cropped to ``y``.

    Args:
        channels, features, depth: the CNN (``prior="cnn"``).
        balance: β of the Tikhonov start ``P = (KᵀK + βDᵀD)⁻¹``.
        prior: ``"cnn"`` or ``"unet"`` (a noise-level-conditioned :class:`~deblur_edu.learned.GaussianDenoiser`).
        width, levels, blocks: the U-Net's (``prior="unet"``).
        level_slope, level_floor: initial ``a``, ``b`` of the U-Net's level ``s(σ) = a σ + b``.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> net = TikhonovCNN(features=8, depth=3)
        >>> net(torch.rand(2, 1, 32, 32), gaussian(7, 1.0)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, channels: int = 1, features: int = 32, depth: int = 5, balance: float = 1e-2,
                 prior: str = "cnn", width: int = 32, levels: int = 3, blocks: int = 1,
                 level_slope: float = 1.75, level_floor: float = 0.0225):
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}.")
        self.channels, self.balance, self.prior = channels, balance, prior
        if prior == "unet":
            self.denoiser = GaussianDenoiser(channels, width, levels, blocks)
            self.log_level_slope = nn.Parameter(torch.tensor(float(level_slope)).log())
            self.log_level_floor = nn.Parameter(torch.tensor(float(level_floor)).log())
        else:
            self.cnn = small_cnn(channels, features, depth)

    @property
    def uses_sigma(self) -> bool:
        """Whether the model uses the noise level σ it is given: the U-Net prior does, the CNN does not."""
        return self.prior == "unet"

    def forward(self, y: torch.Tensor, k: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (B, C, H, W) given kernels ``k`` (B or 1, 1, h, w) and the noise level ``sigma``
        (a number or one per image): required by the U-Net prior, ignored by the CNN (``uses_sigma``)."""
        y, k = check_problem(y, k)
        check_channels(y, self.channels, "TikhonovCNN")
        check_model_dtype(y, self, "TikhonovCNN")
        A = Blur(k, "valid", check_inputs=False)
        x0 = tikhonov_start(A, y, self.balance)
        if self.prior == "cnn":
            return crop(x0 + self.cnn(x0), A.pads)
        sigma = noise_per_image(sigma, y, "TikhonovCNN (prior 'unet')")
        s = denoising_level(sigma, self.log_level_slope, self.log_level_floor)
        return crop(self.denoiser.denoise(x0, s.expand(-1, 1, *x0.shape[-2:])), A.pads)
