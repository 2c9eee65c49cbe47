r"""Total-variation deconvolution by ADMM — circular, and border-aware.

We solve  ``x̂ = argmin_x ½‖M(k ⊛ x) − y‖² + λ·φ(D x)``  with ``φ`` the isotropic TV
norm ``Σ_p |∇x[p]|`` (Rudin, Osher & Fatemi 1992) or another prior given by its prox.

**Circular model** (``M = I``, ``x`` has y's size). Split ``z = D x`` and iterate
(scaled ADMM, Boyd et al. 2011, §3.1.1):

    x ← F⁻¹[ (conj(K)·F y + ρ·F Dᵀ(z − u)) / (|K|² + ρ|D|²) ]      (FFT solve)
    z ← prox_{(λ/ρ)φ}(D x + u)                                        (shrinkage)
    u ← u + D x − z                                                   (dual ascent)

**Border-aware model** (Almeida & Figueiredo, "Deconvolving images with unknown
boundaries using the alternating direction method of multipliers", IEEE TIP 2013).
The observation is the ``valid`` part of a circular blur of a *larger* scene: ``M`` crops
(H+h−1)×(W+w−1) down to H×W. A second split ``v = K x`` keeps every sub-step cheap:

    x ← F⁻¹[ (ρ_v·conj(K)·F(v − d) + ρ·F Dᵀ(z − u)) / (ρ_v|K|² + ρ|D|²) ]   (FFT solve)
    v ← (Mᵀy + ρ_v (K x + d)) / (MᵀM + ρ_v)                                (per pixel)
    z ← prox_{(λ/ρ)φ}(D x + u),   d ← d + K x − v,   u ← u + D x − z

The circular update is the same x-step with ``v = y``, ``d = 0``, ``ρ_v = 1``. The
estimated scene (enlarged to a fast FFT size) is cropped back to y's size. Each iteration costs four real FFTs.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..checks import check_iterations, check_positive, check_problem
from ..metrics import psnr
from ..physics import crop, fast_fft_size, fft_dtype, pad, psf2otf, scene_padding, zero_pad
from .priors import GRADIENT, Derivatives, gradient_magnitude, prox_tv

ADMM_BOUNDARIES = ("circular", "valid")

Prox = Callable[[torch.Tensor, float], torch.Tensor]
Penalty = Callable[[torch.Tensor], torch.Tensor]


def isotropic_tv(g: torch.Tensor) -> torch.Tensor:
    """``Σ_p |g[p]|`` over gradient fields (B, C, 2, H, W), per image."""
    return gradient_magnitude(g).sum(dim=(1, 2, 3, 4))


def scene_pads_fast(image: tuple[int, int], kernel: tuple[int, int]) -> tuple[int, int, int, int]:
    """Scene padding (top, bottom, left, right) of the border-aware model, enlarged at the
    bottom/right so the scene's sides are fast FFT sizes. The scene only has to be *at
    least* (H + h − 1)×(W + w − 1): extra unobserved pixels change nothing in the model,
    and a 282-point FFT is ten times slower than a 288-point one."""
    top, bottom, left, right = scene_padding(*kernel)
    H, W = image
    bottom += fast_fft_size(H + top + bottom) - (H + top + bottom)
    right += fast_fft_size(W + left + right) - (W + left + right)
    return top, bottom, left, right


def admm_deconvolve(
    y: torch.Tensor,
    k: torch.Tensor,
    prox: Prox,
    penalty: Penalty,
    lam: float,
    rho: float,
    rho_data: float,
    iterations: int,
    boundary: str = "valid",
    rho_growth: float = 1.0,
    x0: torch.Tensor | None = None,
    x_true: torch.Tensor | None = None,
    history: bool = False,
    derivatives: Derivatives = GRADIENT,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, list[float]]]:
    """The ADMM engine shared by TV and the hyper-Laplacian prior (see module docstring).

    ``prox(v, tau)`` is the prior's proximal map, ``penalty(g)`` its value per image
    (for the objective in the history). ``rho_growth > 1`` increases ρ every iteration
    (continuation, as in half-quadratic splitting; the scaled dual is rescaled to match).
    ``x0`` (y's shape; default ``y``) is the initial estimate, replicate-padded to the scene.
    ``derivatives`` is the operator ``D`` the prior acts on (default: the gradient ∇).
    Half-precision ``y`` is solved in float32 and ``x̂`` returned in y's dtype.
    With ``history=True`` also returns per-iteration ``objective``, ``primal_residual``,
    ``dual_residual`` and, given ``x_true``, ``psnr`` (batch means).
    """
    y, k = check_problem(y, k)
    if boundary not in ADMM_BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r} for ADMM; choose one of {ADMM_BOUNDARIES}.")
    lam, rho, rho_data = (check_positive(v, n) for v, n in ((lam, "lam"), (rho, "rho"), (rho_data, "rho_data")))
    check_iterations(iterations)
    check_positive(rho_growth, "rho_growth")

    dtype, work = y.dtype, fft_dtype(y.dtype)
    y = y.to(work)  # half precision: solved in float32 (k already is: check_problem)
    circular = boundary == "circular"
    pads = (0, 0, 0, 0) if circular else scene_pads_fast(y.shape[-2:], k.shape[-2:])
    x = pad(y if x0 is None else x0.to(work), pads, "replicate")
    shape = x.shape[-2:]
    K = psf2otf(k, shape)
    K2 = K.abs() ** 2
    D, Dt = derivatives.forward, derivatives.adjoint
    D2 = derivatives.otf_power(shape, y.device, y.dtype)
    mask = zero_pad(torch.ones_like(y), pads)
    y_scene = zero_pad(y, pads)
    rho_v = 1.0 if circular else rho_data
    v = y if circular else torch.fft.irfft2(K * torch.fft.rfft2(x), s=shape)
    d = torch.zeros_like(v)
    z = D(x)
    u = torch.zeros_like(z)
    trace: dict[str, list[float]] = {k_: [] for k_ in ("objective", "primal_residual", "dual_residual", "psnr")}

    for _ in range(iterations):
        X = (rho_v * K.conj() * torch.fft.rfft2(v - d) + rho * torch.fft.rfft2(Dt(z - u))) / (
            rho_v * K2 + rho * D2
        )
        x = torch.fft.irfft2(X, s=shape)
        Dx = D(x)
        z_old, v_old = z, v
        z = prox(Dx + u, lam / rho)
        u = u + Dx - z
        Kx = torch.fft.irfft2(K * X, s=shape)
        if not circular:
            v = (y_scene + rho_v * (Kx + d)) / (mask + rho_v)
            d = d + Kx - v
        if history:
            data = 0.5 * ((mask * Kx - y_scene) ** 2).sum(dim=(1, 2, 3))
            trace["objective"].append(float((data + lam * penalty(Dx)).mean()))
            primal = (Dx - z).pow(2).sum() + (0 if circular else (Kx - v).pow(2).sum())
            dual = (rho * Dt(z - z_old)).pow(2).sum()
            if not circular:
                dual = dual + (rho_v * torch.fft.irfft2(K.conj() * torch.fft.rfft2(v - v_old), s=shape)).pow(2).sum()
            trace["primal_residual"].append(float(primal.sqrt()))
            trace["dual_residual"].append(float(dual.sqrt()))
            if x_true is not None:
                trace["psnr"].append(float(psnr(crop(x, pads).clamp(0, 1), x_true).mean()))
        if rho_growth != 1.0:
            rho *= rho_growth
            u = u / rho_growth
    x_hat = crop(x, pads).to(dtype)
    return (x_hat, trace) if history else x_hat


def tv_admm(
    y: torch.Tensor,
    k: torch.Tensor,
    lam: float = 2e-4,
    rho: float | None = None,
    rho_data: float | None = None,
    iterations: int = 60,
    boundary: str = "valid",
    x_true: torch.Tensor | None = None,
    history: bool = False,
):
    r"""TV deconvolution ``argmin ½‖M(k ⊛ x) − y‖² + λ·TV(x)`` by ADMM.

    Args:
        y: blurry images, (B, C, H, W).
        k: kernels, (B or 1, 1, h, w).
        lam: TV weight λ > 0 (grows with the noise level).
        rho: penalty of the ``z = Dx`` split (default ``10·λ``).
        rho_data: penalty of the ``v = Kx`` split (border-aware only; default 0.05).
        iterations: ADMM iterations.
        boundary: ``"valid"`` (border-aware: estimates the larger scene) or ``"circular"``.
        x_true, history: see :func:`admm_deconvolve`.
    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import Blur
        >>> y = Blur(gaussian(9, 1.5), "valid")(torch.rand(2, 1, 72, 72))
        >>> tv_admm(y, gaussian(9, 1.5), lam=1e-3, iterations=20).shape
        torch.Size([2, 1, 64, 64])
    """
    rho = 10 * lam if rho is None else rho
    rho_data = 0.05 if rho_data is None else rho_data
    return admm_deconvolve(
        y, k, prox_tv, isotropic_tv, lam, rho, rho_data, iterations, boundary, x_true=x_true, history=history
    )
