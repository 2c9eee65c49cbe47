r"""A learned Gaussian denoiser ``D(x, σ)``: the image prior of plug-and-play (chapter 2, §2.7).

A denoiser trained to remove white Gaussian noise of level σ from natural images has learned
what natural images look like: by Tweedie's formula, the best (MMSE) denoiser moves a noisy
image along the gradient of the log-density of noisy images, ``D(x, σ) = x + σ² ∇ log p_σ(x)``
(Robbins 1956; Efron 2011). Plug-and-play methods (Venkatakrishnan, Bouman & Wohlberg 2013;
Zhang et al., "Plug-and-play image restoration with deep denoiser prior", TPAMI 2021 — DPIR)
use it in place of a hand-made prior's proximal map (:mod:`deblur_edu.learned.pnp`).

The network is a small U-Net (:class:`~deblur_edu.learned.UNet`) that predicts the noise to
remove, ``D(x, σ) = x + U([x, σ·1])``, and sees the noise level as a second input channel — a
constant map, as DRUNet and FFDNet (Zhang et al. 2018) do. Why σ-conditioned rather than
blind (e.g. bias-free, Mohan et al. 2020): plug-and-play sets the denoiser's strength by a
*schedule*, from strong to weak, and what it denoises is the current estimate, whose error is
not white noise of a known level; a blind denoiser would guess the strength from the input and
could not be steered. Trained on photographs for σ log-uniform in [0.002, 0.2]
(``deblur_edu/configs/denoiser-cpu.yaml``); at σ = 0 it is close to the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_channels, check_image, check_model_dtype
from .unet import UNet

#: the smallest noise level a learned method computes with (σ = 0 would give the data all the weight)
NOISE_FLOOR = 2e-3


def noise_map(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """σ as a (B, 1, H, W) map on ``like``'s device and dtype: a number, or one value per image.

    Example:
        >>> noise_map(torch.tensor([0.1, 0.2]), torch.zeros(2, 1, 3, 3))[:, 0, 0, 0].tolist()
        [0.10000000149011612, 0.20000000298023224]
    """
    s = torch.as_tensor(sigma, device=like.device, dtype=like.dtype)
    if s.dim() > 1 and s.numel() == like.shape[0]:
        s = s.reshape(-1)
    if s.dim() > 1 or (s.dim() == 1 and s.numel() not in (1, like.shape[0])):
        raise ValueError(f"sigma must be a number or one value per image ({like.shape[0]}), got shape {tuple(s.shape)}.")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("sigma (the noise standard deviation) must be finite and >= 0.")
    return s.reshape(-1, 1, 1, 1).expand(like.shape[0], 1, *like.shape[-2:])


class GaussianDenoiser(nn.Module):
    """``D(x, σ) = x + U([x, σ])`` — a noise-level-conditioned U-Net denoiser (module docstring).

    Args:
        channels: image channels.
        width, levels, blocks: the U-Net's width at full resolution, halvings, residual blocks per stage.

    Example:
        >>> net = GaussianDenoiser(width=8, levels=2)
        >>> x = torch.rand(2, 1, 30, 33)
        >>> net(x, 0.1).shape, net(x, torch.tensor([0.0, 0.2])).shape
        (torch.Size([2, 1, 30, 33]), torch.Size([2, 1, 30, 33]))
    """

    def __init__(self, channels: int = 1, width: int = 32, levels: int = 3, blocks: int = 1):
        super().__init__()
        self.channels = channels
        self.unet = UNet(channels, width, levels, blocks, in_channels=channels + 1)
        nn.init.zeros_(self.unet.head.weight)  # start as the identity: D(x, σ) = x
        nn.init.zeros_(self.unet.head.bias)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` (B, C, H, W) at noise level ``sigma`` (a number or one per image)."""
        x = check_image(x, "x", value_range=False)
        check_channels(x, self.channels, "GaussianDenoiser")
        check_model_dtype(x, self, "GaussianDenoiser")
        return self.denoise(x, noise_map(sigma, x))

    def denoise(self, x: torch.Tensor, sigma_map: torch.Tensor) -> torch.Tensor:
        """``x + U([x, σ])`` for a checked ``x`` and its (B, 1, H, W) σ map, without the checks (each
        reads a value back from the device): what an iterative solver calls at every step."""
        return x + self.unet.residual(torch.cat([x, sigma_map], dim=1))


def noise_per_image(sigma: float | torch.Tensor | None, y: torch.Tensor, model: str) -> torch.Tensor:
    """σ of a batch ``y`` as (B, 1, 1, 1) for a model conditioned on it (:func:`noise_map`'s checks); a clear
    error naming ``model`` when σ is not given.

    Example:
        >>> noise_per_image(0.01, torch.zeros(2, 1, 4, 4), "net").shape
        torch.Size([2, 1, 1, 1])
    """
    if sigma is None:
        raise ValueError(f"this {model} is conditioned on the noise level: call it as net(y, k, sigma) "
                         f"with sigma the noise standard deviation of y (a number, or one per image).")
    return noise_map(sigma, y[:, :1, :1, :1])


def denoising_level(sigma: torch.Tensor, log_slope: torch.Tensor, log_floor: torch.Tensor) -> torch.Tensor:
    """The level a learned method hands its denoiser, ``s(σ) = a·max(σ, NOISE_FLOOR) + b`` with ``a = exp(log_slope)``,
    ``b = exp(log_floor)`` learned (positive by construction); used by the DEQ's hqs form and its
    feedforward comparator.

    Example:
        >>> float(denoising_level(torch.tensor(0.01), torch.tensor(2.0).log(), torch.tensor(0.02).log()))
        0.03999999910593033
    """
    return log_slope.exp() * sigma.clamp(min=NOISE_FLOOR) + log_floor.exp()
