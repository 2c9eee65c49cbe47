r"""Image quality metrics on batched tensors: PSNR and SSIM (differentiable, any device).

Both return one value per image, shape (B,), and can ignore a ``crop``-pixel frame: the
benchmark scores only the interior, since no method can know what lies past the border.
Both take images in [0, ``data_range``]: a reference ``x`` far above ``data_range`` (0–255
data scored with the default ``data_range=1``) is refused, not turned into −8 dB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import MAX_PLAUSIBLE_VALUE, check_float_tensor


def _pair(x_hat: torch.Tensor, x: torch.Tensor, crop: int, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    check_float_tensor(x_hat, "x_hat")
    check_float_tensor(x, "x")
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not math.isfinite(data_range) \
            or data_range <= 0:
        raise ValueError(f"data_range is the images' value range, a finite number > 0 (1 for [0, 1]), got {data_range!r}.")
    if x_hat.shape != x.shape or x.dim() != 4:
        raise ValueError(
            f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have the same (B, C, H, W) shape."
        )
    peak = float(x.detach().abs().amax())  # the reference only: a bad estimate may overshoot
    if peak > MAX_PLAUSIBLE_VALUE * data_range:
        raise ValueError(
            f"x has values up to {peak:.1f} but data_range is {data_range:g}; scale the images to "
            f"[0, {data_range:g}] (divide 8-bit data by 255), or pass data_range=255 for 0–255 data."
        )
    if crop < 0 or 2 * crop >= min(x.shape[-2:]):
        raise ValueError(f"crop={crop} leaves nothing of a {tuple(x.shape[-2:])} image.")
    if crop:
        x_hat, x = x_hat[..., crop:-crop, crop:-crop], x[..., crop:-crop, crop:-crop]
    return x_hat, x


def psnr(x_hat: torch.Tensor, x: torch.Tensor, crop: int = 0, data_range: float = 1.0) -> torch.Tensor:
    r"""Peak signal-to-noise ratio in dB: ``10·log10(data_range² / MSE)``, per image.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> psnr(x + 0.1, x)
        tensor([20.])
    """
    x_hat, x = _pair(x_hat, x, crop, data_range)
    mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)


def ssim(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    crop: int = 0,
    data_range: float = 1.0,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    r"""Structural similarity (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004), per image.

    With local means μ, variances σ² and covariance σ_xy over a ``win_size``² uniform
    window (sample covariance, N/(N−1)), ``C1 = (k1·L)²``, ``C2 = (k2·L)²``:

        SSIM = mean over windows and channels of
               (2 μ_x μ_y + C1)(2 σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)).

    Windows are taken only where they fit inside the image, which reproduces
    ``skimage.metrics.structural_similarity(data_range=1)`` with its defaults (it
    averages after cropping ``(win_size − 1) / 2`` pixels; tested to 1e-3).

    ``win_size`` is odd and ≥ 3, as in scikit-image (the N/(N−1) correction needs N > 1).

    Example:
        >>> x = torch.rand(2, 1, 32, 32)
        >>> ssim(x, x)
        tensor([1., 1.])
    """
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer ≥ 3 (default 7, as in scikit-image), got {win_size!r}.")
    x_hat, x = _pair(x_hat, x, crop, data_range)
    B, C = x.shape[:2]
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images {tuple(x.shape[-2:])} are smaller than the SSIM window {win_size}.")
    n = win_size**2
    cov_norm = n / (n - 1)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t.reshape(B * C, 1, *t.shape[-2:]), win_size, stride=1)

    mu_x, mu_y = mean(x_hat), mean(x)
    var_x = cov_norm * (mean(x_hat * x_hat) - mu_x**2)
    var_y = cov_norm * (mean(x * x) - mu_y**2)
    cov = cov_norm * (mean(x_hat * x) - mu_x * mu_y)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(B, -1).mean(dim=1)
