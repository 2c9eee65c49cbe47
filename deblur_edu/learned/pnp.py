r"""Plug-and-play deblurring: half-quadratic splitting with a learned denoiser as the prior.

Deconvolution with a prior Φ solves  ``x̂ = argmin_x 1/(2σ²)‖A x − y‖² + λ Φ(x)``.
Half-quadratic splitting (HQS; Geman & Yang 1995) introduces ``z ≈ x`` and alternates

    x_k = argmin_x ‖A x − y‖² + α_k ‖x − z_{k−1}‖²            (data step: a linear system)
    z_k = argmin_z ½‖z − x_k‖² + (λ/μ_k) Φ(z) = prox(x_k)       (prior step: a denoiser)

with ``α_k = μ_k σ²``. The prior step *is* Gaussian denoising at noise level
``σ_k = √(λ/μ_k)``, so any denoiser can stand in for the prox of Φ — the image prior is
whatever the denoiser learned (Venkatakrishnan, Bouman & Wohlberg 2013; Zhang, Li, Zuo,
Zhang, Van Gool & Timofte, "Plug-and-play image restoration with deep denoiser prior",
IEEE TPAMI 2021 — DPIR). DPIR's schedule lowers ``σ_k`` geometrically from a large value
(0.19 ≈ 49/255) to the noise level σ over a few iterations: early steps denoise strongly and
trust the data little, late steps the reverse. With ``σ_k`` chosen, ``μ_k = λ/σ_k²`` and

    α_k = λ σ² / σ_k².

**Border-aware data step.** As in :mod:`deblur_edu.classical.tv_admm`, the unknown is the
scene, larger than ``y`` (the ``valid`` model ``A = M K``: blur on the scene grid, then keep
the observed pixels). ``(AᵀA + α I) x = Aᵀ y + α z`` has no closed form (``M`` and ``K`` do
not commute), so it is solved by preconditioned conjugate gradients
(:func:`~deblur_edu.learned.fixed_point.preconditioned_cg`) with the circular approximation
``(|K|² + α)⁻¹`` as preconditioner, a fixed number of iterations warm-started from the
previous estimate (no host synchronisation; differentiable). The result is the last
denoised estimate ``z``, cropped to ``y``'s size.

**DPIR's x8 mode** (``orientations=True, clamp=True``): the denoiser is handed the data step's
estimate clamped to [0, 1] (the range it was trained on) and, at iteration ``i``, turned by element
``i mod 8`` of the square's symmetries (:func:`orient`), its output turned back. A network is not
exactly equivariant to flips and quarter turns; cycling through them spreads its
orientation-dependent errors over the iterations, where they average out — an ensemble at no
extra cost. ``python -m deblur_edu.experiments.ch2_pnp_schedule`` measures what it buys on the
tune split.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..classical.tv_admm import scene_pads_fast
from .denoiser import NOISE_FLOOR  # the noise level the schedule ends at when σ is smaller (σ = 0: no prior left)
from .fixed_point import preconditioned_cg
from ..physics import crop, fft_dtype, irfft2, pad, psf2otf, rfft2, zero_pad
from ..checks import check_iterations, check_positive, check_problem, check_sigma

#: ``denoiser(x, σ_k) → z``: any Gaussian denoiser (e.g. :class:`~deblur_edu.learned.denoiser.GaussianDenoiser`)
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
#: DPIR's first denoising level, 49/255
SIGMA_START = 49 / 255


def dpir_schedule(sigma: float, iterations: int, sigma_start: float = SIGMA_START) -> list[float]:
    r"""Denoising levels ``σ_k``, geometric from ``sigma_start`` down to ``max(σ, NOISE_FLOOR)``.

    Example:
        >>> [round(s, 4) for s in dpir_schedule(0.01, 4, sigma_start=0.16)]
        [0.16, 0.0635, 0.0252, 0.01]
    """
    end = max(sigma, NOISE_FLOOR)
    start = max(sigma_start, end)
    if iterations == 1:
        return [end]
    return [float(start * (end / start) ** (i / (iterations - 1))) for i in range(iterations)]


def orient(x: torch.Tensor, i: int) -> torch.Tensor:
    """Element ``i`` (0–7) of the square's symmetry group applied to ``x``: transpose if bit 4, then
    mirror the rows if bit 1 and the columns if bit 2. :func:`unorient` undoes it.

    Example:
        >>> x = torch.arange(6.0).reshape(1, 1, 2, 3)
        >>> all(torch.equal(unorient(orient(x, i), i), x) for i in range(8))
        True
    """
    if i & 4:
        x = x.transpose(-2, -1)
    if i & 1:
        x = x.flip(-2)
    if i & 2:
        x = x.flip(-1)
    return x


def unorient(x: torch.Tensor, i: int) -> torch.Tensor:
    """The inverse of :func:`orient` ``(x, i)``: the same steps in reverse order."""
    if i & 2:
        x = x.flip(-1)
    if i & 1:
        x = x.flip(-2)
    if i & 4:
        x = x.transpose(-2, -1)
    return x


def pnp_hqs(
    y: torch.Tensor,
    k: torch.Tensor,
    sigma: float,
    denoiser: Denoiser,
    lam: float = 0.23,
    iterations: int = 8,
    sigma_start: float = SIGMA_START,
    cg_iterations: int = 10,
    orientations: bool = False,
    clamp: bool = False,
) -> torch.Tensor:
    r"""Plug-and-play HQS deblurring, border-aware (see the module docstring).

    Args:
        y: blurry images, (B, C, H, W).
        k: kernels, (B or 1, 1, h, w).
        sigma: the noise level σ of ``y``.
        denoiser: ``denoiser(x, σ_k)``, a Gaussian denoiser for level σ_k.
        lam: λ, the prior's weight relative to the data (DPIR: 0.23).
        iterations: HQS iterations (denoiser calls).
        sigma_start: the first denoising level.
        cg_iterations: conjugate-gradient iterations per data step.
        orientations: turn the estimate by symmetry ``i mod 8`` before the ``i``-th denoiser call.
        clamp: clamp the estimate to [0, 1] before each denoiser call.
    Returns:
        x̂ with y's shape.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import Blur
        >>> y = Blur(gaussian(9, 1.5), "valid")(torch.rand(1, 1, 40, 40))
        >>> identity = lambda x, s: x  # a "denoiser" that trusts the data: least squares
        >>> pnp_hqs(y, gaussian(9, 1.5), 0.01, identity, iterations=3).shape
        torch.Size([1, 1, 32, 32])
    """
    y, k = check_problem(y, k)
    sigma = check_sigma(sigma)
    check_positive(lam, "lam")
    check_positive(sigma_start, "sigma_start")
    check_iterations(iterations)
    check_iterations(cg_iterations, "cg_iterations")
    dtype = y.dtype  # half precision is solved in float32 (the FFTs and CG's inner products need it)
    y, k = y.to(fft_dtype(dtype)), k.to(fft_dtype(dtype))
    pads = scene_pads_fast(y.shape[-2:], k.shape[-2:])
    mask = zero_pad(torch.ones_like(y), pads)
    shape = mask.shape[-2:]
    K = psf2otf(k, shape)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return irfft2(K * rfft2(x), shape)

    def blur_adjoint(r: torch.Tensor) -> torch.Tensor:
        return irfft2(K.conj() * rfft2(r), shape)

    At_y = blur_adjoint(zero_pad(y, pads))
    x = pad(y, pads, "replicate")
    z = x
    noise = max(sigma, NOISE_FLOOR)
    for i, sigma_k in enumerate(dpir_schedule(sigma, iterations, sigma_start)):
        alpha = lam * noise**2 / sigma_k**2

        def normal(v: torch.Tensor, alpha: float = alpha) -> torch.Tensor:
            return blur_adjoint(mask * blur(v)) + alpha * v

        def precondition(r: torch.Tensor, alpha: float = alpha) -> torch.Tensor:
            return irfft2(rfft2(r) / (K.abs() ** 2 + alpha), shape)

        x = preconditioned_cg(normal, At_y + alpha * z, x, precondition, cg_iterations)
        v = x.clamp(0, 1) if clamp else x
        z = unorient(denoiser(orient(v, i), sigma_k), i) if orientations else denoiser(v, sigma_k)
    return crop(z, pads).to(dtype)
