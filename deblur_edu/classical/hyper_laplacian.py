r"""Deconvolution with a hyper-Laplacian prior on image derivatives.

Natural-image gradients are heavy-tailed: their histogram is far more peaked at 0, with
fatter tails, than a Gaussian (ℓ2, Wiener) or even a Laplacian (ℓ1, TV). A closer fit is
``p(∇x) ∝ exp(−|∇x|^α)`` with ``α ≈ 2/3`` (Krishnan & Fergus, "Fast image deconvolution
using hyper-Laplacian priors", NIPS 2009). Levin, Fergus, Durand & Freeman ("Image and
depth from a conventional camera with a coded aperture", SIGGRAPH 2007) put the same
sparse prior on second derivatives as well. Together they give the non-convex problem

    x̂ = argmin_x ½‖M(k ⊛ x) − y‖² + λ Σ_p ( |∇x[p]|^α + w₂ (|∂_hh x[p]|^α + |∂_vv x[p]|^α + |∂_hv x[p]|^α) )

with ``|∇x[p]|`` the gradient magnitude (isotropic, like TV) and ``w₂`` the weight of
the second-order terms (``w₂ = 0``: first derivatives only). First derivatives alone
favour piecewise-*constant* images, as TV does; the second-order terms also reward
piecewise-*smooth* ones, so shading is not flattened into steps.

Krishnan & Fergus split ``w = D x`` with a growing penalty β (half-quadratic splitting);
the w-step is a 1-D problem per pixel and derivative
(:func:`~deblur_edu.classical.priors.prox_hyper_laplacian`). Here the same splitting runs
inside the border-aware ADMM of :mod:`tv_admm`: only the prior's proximal map and the
operator ``D`` change, and ρ grows geometrically as β does in their method.
"""

from __future__ import annotations

import torch

from .priors import (
    FIRST_AND_SECOND_ORDER,
    GRADIENT,
    gradient_magnitude,
    prox_hyper_laplacian,
    prox_hyper_laplacian_isotropic,
)
from .tv_admm import admm_deconvolve


def hyper_laplacian_penalty(g: torch.Tensor, alpha: float, second_order: float = 0.0) -> torch.Tensor:
    """The prior per image: ``Σ_p |∇x[p]|^α`` on ``g[:, :, :2]`` plus, if ``g`` also holds
    second differences (``g[:, :, 2:]``), ``w₂ Σ |·|^α`` over them."""
    first = (gradient_magnitude(g[:, :, :2]) + 1e-12).pow(alpha).sum(dim=(1, 2, 3, 4))
    if g.shape[2] == 2:
        return first
    return first + second_order * (g[:, :, 2:].abs() + 1e-12).pow(alpha).sum(dim=(1, 2, 3, 4))


def prox_hyper_laplacian_prior(v: torch.Tensor, tau: float, alpha: float, second_order: float = 0.0) -> torch.Tensor:
    """Prox of ``τ·``:func:`hyper_laplacian_penalty`: the gradient's magnitude is shrunk as
    a whole (isotropic), each second difference on its own with weight ``τ·w₂``."""
    first = prox_hyper_laplacian_isotropic(v[:, :, :2], tau, alpha)
    if v.shape[2] == 2:
        return first
    return torch.cat((first, prox_hyper_laplacian(v[:, :, 2:], tau * second_order, alpha)), dim=2)


def hyper_laplacian(
    y: torch.Tensor,
    k: torch.Tensor,
    lam: float = 3e-4,
    alpha: float = 2 / 3,
    second_order: float = 0.5,
    rho: float | None = None,
    rho_data: float | None = None,
    iterations: int = 60,
    rho_growth: float = 1.08,
    boundary: str = "valid",
    x0: torch.Tensor | None = None,
    x_true: torch.Tensor | None = None,
    history: bool = False,
):
    r"""Hyper-Laplacian (``|∇x|^α`` + ``w₂|∇²x|^α``) deconvolution, border-aware by default.

    Args:
        y: blurry images, (B, C, H, W).
        k: kernels, (B or 1, 1, h, w).
        lam: prior weight λ > 0.
        alpha: exponent, 0 < α < 1 (2/3 fits natural images; α = 1 would be TV).
        second_order: weight w₂ ≥ 0 of the second differences (0: gradient only).
        rho: initial penalty of the ``w = D x`` split (default ``30·λ``).
        rho_data: penalty of the ``v = Kx`` split (default 0.1).
        iterations: ADMM iterations.
        rho_growth: factor by which ρ grows per iteration (continuation: the splitting
            becomes exact as ρ grows, as in half-quadratic splitting).
        boundary: ``"valid"`` (border-aware) or ``"circular"``.
        x0: initial estimate (y's shape). The problem is non-convex, so the start
            matters: the TV solution (:func:`~deblur_edu.classical.tv_admm`) is a good one.
        x_true, history: see :func:`~deblur_edu.classical.tv_admm.admm_deconvolve`.
    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import Blur
        >>> y = Blur(gaussian(9, 1.5), "valid")(torch.rand(1, 1, 72, 72))
        >>> hyper_laplacian(y, gaussian(9, 1.5), iterations=10).shape
        torch.Size([1, 1, 64, 64])
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}; use tv_admm for alpha = 1.")
    if not second_order >= 0:
        raise ValueError(f"second_order must be ≥ 0 (0 switches the second differences off), got {second_order}.")
    rho = 30 * lam if rho is None else rho
    rho_data = 0.1 if rho_data is None else rho_data

    def prox(v: torch.Tensor, tau: float) -> torch.Tensor:
        return prox_hyper_laplacian_prior(v, tau, alpha, second_order)

    def penalty(g: torch.Tensor) -> torch.Tensor:
        return hyper_laplacian_penalty(g, alpha, second_order)

    return admm_deconvolve(
        y,
        k,
        prox,
        penalty,
        lam,
        rho,
        rho_data,
        iterations,
        boundary,
        rho_growth=rho_growth,
        x0=x0,
        x_true=x_true,
        history=history,
        derivatives=FIRST_AND_SECOND_ORDER if second_order > 0 else GRADIENT,
    )
