r"""Image priors used by the classical solvers: finite differences and proximal maps.

``D x = (∇_h x, ∇_v x)`` are forward differences with circular wrap-around (stacked on a
new axis 2), so ``D`` is diagonalised by the FFT like the blur. Its adjoint ``Dᵀ`` is the
negative divergence. Second differences ``(∂_hh x, ∂_vv x, ∂_hv x)`` (:func:`hessian`) are
circular filters too; a prior may penalise both orders (:data:`FIRST_AND_SECOND_ORDER`).
The proximal map of a penalty φ with weight τ is
``prox_{τφ}(v) = argmin_w τ·φ(w) + ½‖w − v‖²``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..physics import fft_dtype, rfft2


def grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences ``(x[i, j+1] − x[i, j], x[i+1, j] − x[i, j])``, circular: (B, C, 2, H, W)."""
    return torch.stack((x.roll(-1, -1) - x, x.roll(-1, -2) - x), dim=2)


def grad_adjoint(g: torch.Tensor) -> torch.Tensor:
    """``Dᵀ g`` for g of shape (B, C, 2, H, W): backward differences, ``⟨D x, g⟩ = ⟨x, Dᵀ g⟩``."""
    gh, gv = g[:, :, 0], g[:, :, 1]
    return (gh.roll(1, -1) - gh) + (gv.roll(1, -2) - gv)


def _filters_otf_power(filters: list[list[list[float]]], shape: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """``Σ_f |F(f)|²`` on the rfft grid for small filters placed at the origin (circular);
    computed in float32 for half-precision ``dtype``, returned in ``dtype``.

    A filter must fit the grid: a 1×N image has no vertical difference to penalise.
    """
    need = (max(len(taps) for taps in filters), max(len(taps[0]) for taps in filters))
    if shape[0] < need[0] or shape[1] < need[1]:
        raise ValueError(
            f"an image of {shape[0]}×{shape[1]} pixels is too small for this regulariser: its finite "
            f"differences need at least {need[0]}×{need[1]} pixels. Deblur a larger image (or, for "
            f"Wiener, use regulariser='identity')."
        )
    work = fft_dtype(dtype)
    power = torch.zeros(1, 1, shape[0], shape[1] // 2 + 1, device=device, dtype=work)
    for taps in filters:
        t = torch.tensor(taps, device=device, dtype=work)
        f = torch.zeros(1, 1, *shape, device=device, dtype=work)
        f[..., : t.shape[0], : t.shape[1]] = t
        power = power + rfft2(f).abs() ** 2
    return power.to(dtype)


def grad_otf_power(shape: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """``|D_h|² + |D_v|²`` on the rfft grid: the Fourier symbol of ``DᵀD`` (the negative Laplacian)."""
    # the magnitude |F(d)|² is the same for the difference filter and its mirror image
    return _filters_otf_power([[[-1.0, 1.0]], [[-1.0], [1.0]]], shape, device, dtype)


def hessian(x: torch.Tensor) -> torch.Tensor:
    """Second differences, circular: (B, C, 3, H, W) with

    ``∂_hh x = x[i, j+1] − 2x[i, j] + x[i, j−1]``, ``∂_vv x`` likewise down the columns and
    ``∂_hv x = ∇_v ∇_h x`` (forward differences of forward differences).
    """
    dh = x.roll(-1, -1) - x
    return torch.stack(
        (x.roll(-1, -1) - 2 * x + x.roll(1, -1), x.roll(-1, -2) - 2 * x + x.roll(1, -2), dh.roll(-1, -2) - dh), dim=2
    )


def hessian_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`hessian`: the centred second differences are self-adjoint, and
    ``(∇_v ∇_h)ᵀ = ∇_hᵀ ∇_vᵀ`` is two backward differences."""
    ghh, gvv, ghv = g[:, :, 0], g[:, :, 1], g[:, :, 2]
    back_v = ghv.roll(1, -2) - ghv
    return (
        ghh.roll(-1, -1) - 2 * ghh + ghh.roll(1, -1)
        + gvv.roll(-1, -2) - 2 * gvv + gvv.roll(1, -2)
        + back_v.roll(1, -1) - back_v
    )


def hessian_otf_power(shape: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """``|∂_hh|² + |∂_vv|² + |∂_hv|²`` on the rfft grid: the Fourier symbol of ``HᵀH``."""
    return _filters_otf_power([[[1.0, -2.0, 1.0]], [[1.0], [-2.0], [1.0]], [[1.0, -1.0], [-1.0, 1.0]]], shape, device, dtype)


def grad_and_hessian(x: torch.Tensor) -> torch.Tensor:
    """First and second differences stacked on axis 2: (B, C, 5, H, W) = (∇_h, ∇_v, ∂_hh, ∂_vv, ∂_hv)."""
    return torch.cat((grad(x), hessian(x)), dim=2)


def grad_and_hessian_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`grad_and_hessian`."""
    return grad_adjoint(g[:, :, :2]) + hessian_adjoint(g[:, :, 2:])


def grad_and_hessian_otf_power(shape: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Fourier symbol of ``DᵀD`` for :func:`grad_and_hessian`."""
    return grad_otf_power(shape, device, dtype) + hessian_otf_power(shape, device, dtype)


@dataclass(frozen=True)
class Derivatives:
    """A circular derivative operator ``D`` as the ADMM solver needs it: ``D x``, ``Dᵀ g``
    and the Fourier symbol of ``DᵀD`` (so the x-step stays one FFT division)."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    adjoint: Callable[[torch.Tensor], torch.Tensor]
    otf_power: Callable[..., torch.Tensor]


#: ``D = ∇``: the gradient, used by TV
GRADIENT = Derivatives(grad, grad_adjoint, grad_otf_power)
#: ``D = (∇, ∂_hh, ∂_vv, ∂_hv)``: first and second differences (Levin et al. 2007's sparse prior)
FIRST_AND_SECOND_ORDER = Derivatives(grad_and_hessian, grad_and_hessian_adjoint, grad_and_hessian_otf_power)


def gradient_magnitude(g: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``sqrt(g_h² + g_v²)`` of a gradient field (B, C, 2, H, W), keeping axis 2.

    Differentiable everywhere: at ``g = 0`` (a flat patch, e.g. a constant image) the slope
    of ``sqrt`` is infinite and autograd would multiply it by the zero slope of ``g²``,
    giving NaN. The double ``where`` feeds ``sqrt`` a 1 there instead and returns 0, so the
    gradient at 0 is 0 (a subgradient of the norm) and the value is bit-identical to
    ``sqrt(g_h² + g_v²)``. (Written out: ``Tensor.norm(dim=2)`` is a hundred times slower
    on CPU here.)
    """
    squared = (g * g).sum(dim=2, keepdim=True)
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def prox_tv(v: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Isotropic shrinkage, the prox of ``τ·‖g‖_{2,1} = τ Σ_p sqrt(g_h[p]² + g_v[p]²)``.

    ``w = max(1 − τ / |v|, 0) · v`` with ``|v|`` the per-pixel gradient magnitude (axis 2).
    """
    norm = gradient_magnitude(v)
    return v * torch.clamp(1 - tau / norm.clamp(min=1e-12), min=0)


def prox_hyper_laplacian(v: torch.Tensor, tau: float, alpha: float = 2 / 3, newton_steps: int = 5) -> torch.Tensor:
    r"""Prox of the non-convex penalty ``τ·|w|^α`` (0 < α < 1), elementwise.

    ``w* = argmin_w τ|w|^α + ½(w − v)²`` is either 0 or the largest root of
    ``g(w) = ατ w^{α−1} + w − |v|`` on (0, |v|] (Krishnan & Fergus, NIPS 2009). ``g`` is
    convex there, so Newton's method started at ``w = |v|`` decreases monotonically to that
    root; we then keep whichever of the root and 0 has the lower objective.
    """
    a = v.abs()
    w = a.clone()
    for _ in range(newton_steps):
        ws = w.clamp(min=1e-8)
        g = alpha * tau * ws ** (alpha - 1) + ws - a
        dg = alpha * (alpha - 1) * tau * ws ** (alpha - 2) + 1
        step = torch.where(dg > 0, g / dg, ws)  # no root in the convex part: fall to 0
        w = (ws - step).clamp(min=0)
    cost_w = tau * w.clamp(min=1e-12) ** alpha + 0.5 * (w - a) ** 2
    cost_0 = 0.5 * a**2
    return torch.where((cost_w < cost_0) & (w > 0), w, torch.zeros_like(w)) * v.sign()


def prox_hyper_laplacian_isotropic(v: torch.Tensor, tau: float, alpha: float = 2 / 3) -> torch.Tensor:
    r"""Prox of ``τ·Σ_p |g[p]|^α`` with ``|g[p]|`` the gradient magnitude (axis 2), 0 < α < 1.

    The penalty depends on ``|g|`` only, so the prox keeps each pixel's direction and maps
    its magnitude through the 1-D prox: ``w = prox_{τ|·|^α}(|v|) · v / |v|`` — the same
    radial structure as isotropic TV's shrinkage (:func:`prox_tv`).
    """
    norm = gradient_magnitude(v)
    return v * (prox_hyper_laplacian(norm, tau, alpha) / norm.clamp(min=1e-12))


def tv_norm(x: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation ``Σ_p |∇x[p]|`` per image, shape (B,)."""
    return gradient_magnitude(grad(x)).sum(dim=(1, 2, 3, 4))

