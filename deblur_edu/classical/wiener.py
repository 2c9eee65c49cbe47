r"""Wiener / Tikhonov deconvolution in closed form, and edge tapering.

Minimising ``½‖k ⊛ x − y‖² + ½·balance·‖L x‖²`` with a circular blur and a circular
regulariser ``L`` (identity or the gradient ``D``) has the Fourier-domain solution

    X̂ = conj(K)·Y / (|K|² + balance·|L|²)

(Tikhonov 1963; Hunt 1973; Gonzalez & Woods §5.8) — one FFT, one product, one inverse FFT.
Half-precision images are solved in float32 and returned in their own dtype.
With ``L = I`` and ``balance = σ²/σ_x²`` it is the Wiener filter for white signal and noise.

The circular model is wrong at the image border; :func:`edgetaper` and the padded variant
:func:`wiener_padded` reduce the resulting ringing without leaving closed form.
"""

from __future__ import annotations

import torch

from ..physics import Blur, crop, fft_convolve, fft_dtype, irfft2, pad, psf2otf, rfft2
from ..checks import check_positive, check_problem
from .priors import grad_otf_power

REGULARISERS = ("identity", "gradient")


def wiener(
    y: torch.Tensor, k: torch.Tensor, balance: float = 1e-2, regulariser: str = "gradient"
) -> torch.Tensor:
    r"""Wiener/Tikhonov deconvolution: ``X̂ = conj(K)·Y / (|K|² + balance·|L|²)``.

    Args:
        y: blurry images, (B, C, H, W).
        k: kernels, (B or 1, 1, h, w), non-negative, summing to 1.
        balance: regularisation weight > 0; larger is smoother.
        regulariser: ``"identity"`` (|L|² = 1, classic Wiener) or ``"gradient"``
            (|L|² = |D_h|² + |D_v|²: damps high frequencies, leaves the mean untouched).
    Returns:
        x̂ with y's shape.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import blur, add_noise
        >>> x = torch.rand(1, 1, 64, 64)
        >>> y = add_noise(blur(x, gaussian(9, 1.5)), 0.01, torch.Generator().manual_seed(0))
        >>> x_hat = wiener(y, gaussian(9, 1.5), balance=3e-3)
    """
    y, k = check_problem(y, k)
    check_positive(balance, "balance")
    if regulariser not in REGULARISERS:
        raise ValueError(f"unknown regulariser {regulariser!r}; choose one of {REGULARISERS}.")
    dtype = y.dtype  # half precision: k is float32 (check_problem), and so is the filter
    K = psf2otf(k, y.shape[-2:])
    L2 = 1.0 if regulariser == "identity" else grad_otf_power(y.shape[-2:], y.device, k.dtype)
    filt = K.conj() / (K.abs() ** 2 + balance * L2)  # small: one per kernel
    return irfft2(filt * rfft2(y), y.shape[-2:], dtype)


def tikhonov_inverse(otf: torch.Tensor, balance: float | torch.Tensor, shape: tuple[int, int],
                     identity: float | torch.Tensor = 0.0):
    r"""The map ``g ↦ (KᵀK + balance·DᵀD + identity·I)⁻¹ g`` (circular, by FFT).

    ``otf`` is ``psf2otf(k, shape)``; ``balance`` and ``identity`` may be tensors (learned
    weights). The operator is symmetric positive definite: a preconditioner for gradient
    methods on a blur (RGDN's option, chapter 3; the DEQ's, chapter 4, with ``identity``
    its prior weight λ) and, applied to ``Aᵀy``, a Tikhonov solution.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import Blur, psf2otf
        >>> k, g = gaussian(5, 1.0), torch.rand(1, 1, 16, 16)
        >>> P = tikhonov_inverse(psf2otf(k, (16, 16)), 0.1, (16, 16))
        >>> A = Blur(k, "circular")
        >>> back = A.adjoint(A(P(g))) + 0.1 * torch.fft.irfft2(grad_otf_power((16, 16)) * torch.fft.rfft2(P(g)), s=(16, 16))
        >>> torch.allclose(back, g, atol=1e-4)
        True
    """
    denominator = otf.abs() ** 2 + balance * grad_otf_power(shape, otf.device, otf.real.dtype) + identity
    return lambda g: irfft2(rfft2(g) / denominator, shape, g.dtype)


def _autocorrelation_weight(profile: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised circular autocorrelation of a 1-D PSF profile on n points (1 at lag 0)."""
    z = torch.fft.irfft(torch.fft.rfft(profile, n=n - 1).abs() ** 2, n=n - 1)
    z = z / z.max(dim=-1, keepdim=True).values
    return torch.cat((z, z[..., :1]), dim=-1)


def edgetaper(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Blend the border of ``y`` into its circularly blurred self (MATLAB's ``edgetaper``).

    ``J = α·y + (1 − α)·(k ⊛_circ y)`` with ``α = (1 − β_rows)(1 − β_cols)ᵀ``, where β is the
    normalised autocorrelation of the kernel's row/column profile: 1 at the edge, 0 a
    kernel-width inside. The tapered image is (nearly) periodic, so a circular method no
    longer sees a jump at the border.
    """
    y, k = check_problem(y, k)
    dtype = y.dtype
    y = y.to(fft_dtype(dtype))  # half precision: in float32, returned as it came
    H, W = y.shape[-2:]
    beta_r = _autocorrelation_weight(k.sum(dim=-1), H)  # (B, 1, H)
    beta_c = _autocorrelation_weight(k.sum(dim=-2), W)  # (B, 1, W)
    alpha = (1 - beta_r)[..., :, None] * (1 - beta_c)[..., None, :]
    blurred = fft_convolve(y, psf2otf(k, (H, W)))
    return (alpha * y + (1 - alpha) * blurred).to(dtype)


def wiener_padded(
    y: torch.Tensor,
    k: torch.Tensor,
    balance: float = 1e-2,
    regulariser: str = "gradient",
    margin: int | None = None,
) -> torch.Tensor:
    r"""Closed-form Wiener with edge handling: reflect-pad, edge-taper, deconvolve, crop.

    Reflecting ``y`` by ``margin`` pixels (default: the kernel size) moves the circular
    wrap-around away from the image, and :func:`edgetaper` smooths the seam that remains,
    so ringing stays in the margin that is cropped off. Still one FFT solve. ``margin`` is a
    whole number of pixels ≥ 0 (a negative one would crop into the image itself).
    """
    y, k = check_problem(y, k)
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int) or margin < 0):
        raise ValueError(f"margin must be a whole number of pixels ≥ 0 (default: the kernel size), got {margin!r}.")
    dtype = y.dtype
    y = y.to(fft_dtype(dtype))  # half precision: in float32, returned as it came
    h, w = k.shape[-2:]
    m = margin if margin is not None else max(h, w)
    pads = (m, m, m, m)
    y_big = edgetaper(pad(y, pads, "reflect"), k)
    return crop(wiener(y_big, k, balance, regulariser), pads).to(dtype)


def tikhonov_start(A: Blur, y: torch.Tensor, balance: float = 1e-2) -> torch.Tensor:
    r"""A border-aware start on the scene grid: ``x₀ = ȳ − P Aᵀ(A ȳ − y)``.

    ``A`` is a ``valid`` blur, ``ȳ`` is ``y`` replicate-padded to the scene, and
    ``P = (KᵀK + balance·DᵀD)⁻¹`` (:func:`tikhonov_inverse`). One preconditioned gradient
    step on ``½‖A x − y‖²`` from ``ȳ``: deblurred where the scene is observed, the padding
    where it is not — no ringing from a wrapped border. The DEQ's starting point and the
    feedforward network's input (chapter 4).

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> A = Blur(gaussian(5, 1.0), "valid")
        >>> tikhonov_start(A, torch.rand(1, 1, 16, 16)).shape  # the scene: 4 pixels larger
        torch.Size([1, 1, 20, 20])
    """
    y_bar = pad(y, A.pads, "replicate")
    shape = y_bar.shape[-2:]
    return y_bar - tikhonov_inverse(A.otf(shape, y_bar), balance, shape)(A.adjoint(A(y_bar) - y))
