r"""The inverse filter — what goes wrong when you simply divide by the blur.

Under circular blur ``Y = K·X``, so ``X̂ = Y / K``. Wherever ``|K|`` is tiny (blur kills
those frequencies) the division amplifies noise without bound: ``X̂ = X + N / K``.
The *pseudo-inverse* divides only where ``|K| > threshold`` and sets the rest to 0.
"""

from __future__ import annotations

import torch

from ..physics import irfft2, psf2otf, rfft2
from ..checks import check_positive, check_problem


def inverse_filter(y: torch.Tensor, k: torch.Tensor, threshold: float = 1e-3) -> torch.Tensor:
    r"""Pseudo-inverse filter ``X̂ = Y / K`` where ``|K| > threshold``, else 0 (circular model).

    Args:
        y: blurry images (B, C, H, W).
        k: kernels (B or 1, 1, h, w).
        threshold: frequencies with ``|K| ≤ threshold`` are discarded.
    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import blur
        >>> x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
        >>> k = gaussian(5, 0.7, dtype=torch.float64)
        >>> torch.allclose(inverse_filter(blur(x, k), k, 1e-6), x, atol=1e-6)
        True
    """
    y, k = check_problem(y, k)
    check_positive(threshold, "threshold")
    K = psf2otf(k, y.shape[-2:])  # k is float32 for half-precision y (check_problem)
    keep = K.abs() > threshold
    X = torch.where(keep, rfft2(y) / torch.where(keep, K, torch.ones_like(K)), 0)
    return irfft2(X, y.shape[-2:], y.dtype)
