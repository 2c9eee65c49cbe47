r"""Deconvolution with a hyper-Laplacian prior on image gradients.

Natural-image gradients are heavy-tailed: their histogram is far more peaked at 0, with
fatter tails, than a Gaussian (ℓ2, Wiener) or even a Laplacian (ℓ1, TV). A closer fit is
``p(∇x) ∝ exp(−|∇x|^α)`` with ``α ≈ 2/3`` (Krishnan & Fergus, "Fast image deconvolution
using hyper-Laplacian priors", NIPS 2009). It gives the non-convex problem

    x̂ = argmin_x ½‖M(k ⊛ x) − y‖² + λ Σ_p (|∇_h x[p]|^α + |∇_v x[p]|^α).

Krishnan & Fergus split ``w = ∇x`` with a growing penalty β (half-quadratic splitting);
the w-step is an elementwise 1-D problem (:func:`~deblur_edu.classical.priors.prox_hyper_laplacian`).
Here the same splitting runs inside the border-aware ADMM of :mod:`tv_admm` — only the
prior's proximal map changes, and ρ grows geometrically as β does in their method.
"""

from __future__ import annotations

from functools import partial

import torch

from .priors import prox_hyper_laplacian
from .tv_admm import admm_deconvolve


def hyper_laplacian_penalty(g: torch.Tensor, alpha: float) -> torch.Tensor:
    """``Σ |g|^α`` over both gradient components, per image."""
    return (g.abs() + 1e-12).pow(alpha).sum(dim=(1, 2, 3, 4))


def hyper_laplacian(
    y: torch.Tensor,
    k: torch.Tensor,
    lam: float = 1e-3,
    alpha: float = 2 / 3,
    rho: float | None = None,
    rho_data: float | None = None,
    iterations: int = 60,
    rho_growth: float = 1.05,
    boundary: str = "valid",
    x0: torch.Tensor | None = None,
    x_true: torch.Tensor | None = None,
    history: bool = False,
):
    r"""Hyper-Laplacian (``|∇x|^α``) deconvolution, border-aware by default.

    Args:
        y: blurry images, (B, C, H, W).
        k: kernels, (B or 1, 1, h, w).
        lam: prior weight λ > 0.
        alpha: exponent, 0 < α < 1 (2/3 fits natural images; α = 1 would be anisotropic TV).
        rho: initial penalty of the ``w = ∇x`` split (default ``10·λ``).
        rho_data: penalty of the ``v = Kx`` split (default 0.05).
        iterations: ADMM iterations.
        rho_growth: factor by which ρ grows per iteration (continuation).
        boundary: ``"valid"`` (border-aware) or ``"circular"``.
        x0: initial estimate (y's shape). The problem is non-convex, so the start
            matters: the TV solution (:func:`~deblur_edu.classical.tv_admm`) is a good one.
    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import Blur
        >>> y = Blur(gaussian(9, 1.5), "valid")(torch.rand(1, 1, 72, 72))
        >>> hyper_laplacian(y, gaussian(9, 1.5), iterations=10).shape
        torch.Size([1, 1, 64, 64])
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}; use tv_admm for alpha = 1.")
    rho = 10 * lam if rho is None else rho
    rho_data = 0.05 if rho_data is None else rho_data
    return admm_deconvolve(
        y,
        k,
        partial(prox_hyper_laplacian, alpha=alpha),
        partial(hyper_laplacian_penalty, alpha=alpha),
        lam,
        rho,
        rho_data,
        iterations,
        boundary,
        rho_growth=rho_growth,
        x0=x0,
        x_true=x_true,
        history=history,
    )
