r"""Blind deconvolution, classical: estimate the kernel from ``y`` alone, then deconvolve.

Nothing but the blurry image is given: not the kernel, not the noise level. The classical
recipe alternates two easy problems on a pyramid, from a tiny kernel up to the full size
(Fergus et al. 2006; Cho & Lee 2009):

1. **a latent image that keeps only strong edges** — with the current kernel,

       x ← argmin_x ‖k ⊛ x − y‖² + λ‖∇x‖₀                      (L0 gradient prior)

   (Xu, Zheng & Jia, "Unnatural L0 sparse representation for natural image deblurring",
   CVPR 2013; Pan et al., "Deblurring text images via L0-regularized intensity and gradient
   prior", CVPR 2014). ``‖∇x‖₀`` counts the pixels where x changes: the minimiser is made of
   flat regions and sharp steps. It is *not* a good restoration; it is a good witness for
   the kernel, because a step blurred by k shows k itself, while fine texture and noise —
   which mislead the kernel — are flattened away. Solved by half-quadratic splitting: with
   ``g ≈ ∇x`` and a weight β that doubles from 2λ to 10⁵, ``g = ∇x`` where
   ``|∇x|² ≥ λ/β`` and 0 elsewhere (hard thresholding), then x by one FFT solve
   ``x = F⁻¹[(conj(K)·Fy + β·F Dᵀg) / (|K|² + β|D|²)]``.
2. **the kernel that explains y's gradients from x's** —

       k ← argmin_k Σ_d ‖∂_d x ⊛ k − ∂_d y‖² + γ‖k‖²   over an s×s support,

   a least-squares problem in the s² kernel entries, solved by conjugate gradients whose
   every product is two FFTs. The estimate is then *cleaned* (Pan et al.'s rules):
   negative entries and entries below ``threshold``·max set to zero, 8-connected pieces
   carrying less than ``min_mass`` of the total removed, the rest normalised to sum 1.

A coarse level sees a downsampled image in which the shake is only a few pixels long, so
the alternation starts near the right answer; each finer level starts from the upsampled
kernel. The weight λ shrinks by ``λ_decay`` per iteration so that finer edges join later.
The FFT model is circular: ``y`` is first extended to a periodic image whose added band
blends its last row (column) back into its first (:func:`periodic_extension`).

Finally the kernel's centre of mass is moved exactly onto its centre pixel, by a whole-pixel
roll and a fractional bilinear shift (:func:`centre_kernel`): a blind method cannot know where
the true kernel's centre was, and a shift of k̂ is a shift of x̂ — half a pixel of it costs about
a dB. :func:`blind_deconvolve` then hands k̂ and the noise level estimated from y
(:func:`estimate_noise_level`) to any non-blind method: border-aware TV makes the classical
blind baseline, a plug-and-play solver with a learned denoiser a learned one.

Everything is batched: one kernel per image, all images at once.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..checks import check_image, check_iterations, check_positive
from ..kernels import centre_kernel, centre_of_mass, shift_by_fraction  # noqa: F401 (part of this module's story)
from ..physics import fast_fft_size, fft_dtype, psf2otf
from .priors import grad, grad_adjoint, grad_otf_power

#: a non-blind method ``deconvolve(y, k, σ) → x̂``, e.g. a benchmark method
#: (:func:`deblur_edu.bench.methods.get_method`), which takes its tuned weight at σ
NonBlindMethod = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def estimate_noise_level(y: torch.Tensor) -> torch.Tensor:
    r"""Noise standard deviation of each image, from its finest diagonal detail.

    ``d = (y[i+1,j+1] − y[i,j+1] − y[i+1,j] + y[i,j]) / 2`` is, for white noise of std σ, noise
    of std σ, and nearly zero on a blurred (smooth) image; the median absolute deviation
    ``σ̂ = median|d| / 0.6745`` ignores the few edges left (Donoho & Johnstone 1994).

    Returns:
        (B,) tensor.
    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.full((1, 1, 128, 128), 0.5) + 0.02 * torch.randn(1, 1, 128, 128, generator=g)
        >>> round(float(estimate_noise_level(y)), 2)
        0.02
    """
    y = check_image(y, "y")
    if min(y.shape[-2:]) < 2:
        raise ValueError(f"estimating the noise needs at least 2×2 pixels, got an image of {tuple(y.shape[-2:])}.")
    y = y.detach()
    d = (y[..., 1:, 1:] - y[..., :-1, 1:] - y[..., 1:, :-1] + y[..., :-1, :-1]) / 2
    return d.abs().flatten(1).median(dim=1).values / 0.6745


def periodic_extension(y: torch.Tensor, margin: int) -> torch.Tensor:
    """Extend ``y`` (B, C, H, W) at the bottom and right to fast FFT sizes ≥ H + margin,
    W + margin, the new band blending linearly from the last row (column) to the first: the
    result has no jump when it wraps around, so circular convolution fits it."""
    H, W = y.shape[-2:]
    rows = fast_fft_size(H + margin) - H
    t = torch.linspace(0, 1, rows + 2, device=y.device, dtype=y.dtype)[1:-1, None]
    y = torch.cat([y, y[..., -1:, :] * (1 - t) + y[..., :1, :] * t], dim=-2)
    cols = fast_fft_size(W + margin) - W
    t = torch.linspace(0, 1, cols + 2, device=y.device, dtype=y.dtype)[1:-1]
    return torch.cat([y, y[..., :, -1:] * (1 - t) + y[..., :, :1] * t], dim=-1)


#: the half-quadratic splitting's last weight β (the L0 weight λ must stay below half of it, or no step runs)
BETA_MAX = 1e5


def l0_gradient_deblur(y: torch.Tensor, k: torch.Tensor, lam: float, beta_max: float = BETA_MAX,
                       kappa: float = 2.0) -> torch.Tensor:
    r"""``argmin_x ‖k ⊛ x − y‖² + λ‖∇x‖₀`` (circular) by half-quadratic splitting (module docstring, step 1)."""
    shape = y.shape[-2:]
    K = psf2otf(k, shape)
    KtY = K.conj() * torch.fft.rfft2(y)
    K2 = K.abs() ** 2
    D2 = grad_otf_power(shape, y.device, y.dtype)
    x, beta = y, 2 * lam
    while beta < beta_max:
        g = grad(x)
        g = g * ((g**2).sum(dim=2, keepdim=True) >= lam / beta)
        x = torch.fft.irfft2((KtY + beta * torch.fft.rfft2(grad_adjoint(g))) / (K2 + beta * D2), s=shape)
        beta *= kappa
    return x


def place_kernel(k: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """An s×s kernel zero-padded to ``shape`` with its centre rolled to pixel (0, 0) (as :func:`psf2otf`)."""
    s = k.shape[-1]
    out = k.new_zeros(*k.shape[:-2], *shape)
    out[..., :s, :s] = k
    return out.roll((-(s // 2), -(s // 2)), (-2, -1))


def kernel_support(z: torch.Tensor, s: int) -> torch.Tensor:
    """The adjoint of :func:`place_kernel`: the s×s window around pixel (0, 0) of a full-size image."""
    return z.roll((s // 2, s // 2), (-2, -1))[..., :s, :s]


def kernel_least_squares(x: torch.Tensor, y: torch.Tensor, k0: torch.Tensor, gamma: float,
                         iterations: int = 25) -> torch.Tensor:
    r"""``argmin_k Σ_d ‖∂_d x ⊛ k − ∂_d y‖² + γ‖k‖²`` over k0's s×s support (module docstring, step 2).

    The normal equations ``(AᵀA + γI) k = Aᵀ ∂y`` by conjugate gradients from ``k0``, batched (one
    kernel per image); ``AᵀA k`` is the support of ``F⁻¹[Σ_d |F ∂_d x|² · F k]``.
    """
    s, shape = k0.shape[-1], y.shape[-2:]
    X, Y = torch.fft.rfft2(grad(x)), torch.fft.rfft2(grad(y))
    power = (X.abs() ** 2).sum(dim=2)
    b = kernel_support(torch.fft.irfft2((X.conj() * Y).sum(dim=2), s=shape), s)

    def normal(k: torch.Tensor) -> torch.Tensor:
        return kernel_support(torch.fft.irfft2(power * torch.fft.rfft2(place_kernel(k, shape)), s=shape), s) + gamma * k

    def dot(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (a * c).sum(dim=(1, 2, 3), keepdim=True)

    k = k0
    r = b - normal(k)
    p, rr = r, dot(r, r)
    for _ in range(iterations):
        Ap = normal(p)
        alpha = rr / dot(p, Ap).clamp(min=torch.finfo(k.dtype).tiny)
        k, r = k + alpha * p, r - alpha * Ap
        rr_new = dot(r, r)
        p = r + rr_new / rr.clamp(min=torch.finfo(k.dtype).tiny) * p
        rr = rr_new
    return k


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Labels (B, 1, s, s) of the 8-connected pieces of a boolean mask (0 off the mask): every
    pixel takes the largest label among its neighbours until nothing changes."""
    B, _, h, w = mask.shape
    ids = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float64).view(1, 1, h, w)  # exact ids
    labels = ids * mask
    while True:
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * mask
        if torch.equal(grown, labels):
            return labels.long()
        labels = grown


def clean_kernel(k: torch.Tensor, threshold: float = 0.1, min_mass: float = 0.1) -> torch.Tensor:
    """Non-negative, entries below ``threshold``·max zeroed, 8-connected pieces with less than
    ``min_mass`` of the total removed, normalised to sum 1 (a kernel with nothing left becomes the identity)."""
    k = k.clamp(min=0)
    k = torch.where(k < threshold * k.amax(dim=(-2, -1), keepdim=True), 0.0, k)
    k = k / k.sum(dim=(-2, -1), keepdim=True).clamp(min=torch.finfo(k.dtype).tiny)
    labels = connected_components(k > 0).flatten(1)
    mass = torch.zeros(k.shape[0], labels.shape[1] + 1, dtype=k.dtype, device=k.device)
    mass.scatter_add_(1, labels, k.flatten(1))
    k = k * (mass.gather(1, labels) >= min_mass).view_as(k)
    total = k.sum(dim=(-2, -1), keepdim=True)
    return torch.where(total > 0, k / total.clamp(min=torch.finfo(k.dtype).tiny), identity_kernel(k))


def identity_kernel(like: torch.Tensor) -> torch.Tensor:
    """A kernel of ``like``'s shape that is 1 at its centre pixel."""
    delta = torch.zeros_like(like)
    delta[..., like.shape[-2] // 2, like.shape[-1] // 2] = 1
    return delta


def resize_kernel(k: torch.Tensor, s: int) -> torch.Tensor:
    """Bilinear resize to s×s, non-negative, sum 1."""
    k = F.interpolate(k, size=(s, s), mode="bilinear", align_corners=False).clamp(min=0)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def pyramid_sizes(size: int, ratio: float = 2**-0.5, smallest: int = 5) -> list[int]:
    """Odd kernel sides from the coarsest level (≥ ``smallest``) up to ``size``, each about
    ``ratio`` times the next.

    Example:
        >>> pyramid_sizes(31)
        [5, 7, 9, 13, 17, 23, 31]
    """
    sizes = [size]
    while True:
        s = round(sizes[-1] * ratio)
        s += 1 - s % 2
        if s < smallest or s >= sizes[-1]:
            return sizes[::-1]
        sizes.append(s)


def check_settings(size: int, iterations: int, lam: float, lam_decay: float, lam_min: float, gamma: float,
                   threshold: float, min_mass: float, work_dtype: torch.dtype | None) -> None:
    """Refuse, with what to do instead, settings of :func:`estimate_kernel` that would fail late or
    silently estimate nothing (a λ the splitting never reaches, a kernel cleaned away)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int (an odd number of pixels), got {size!r}.")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd number of pixels >= 3, got {size!r}.")
    check_iterations(iterations)
    lam, gamma, lam_min = check_positive(lam, "lam"), check_positive(gamma, "gamma"), check_positive(lam_min, "lam_min")
    if lam >= BETA_MAX / 2:
        raise ValueError(f"lam = {lam:g} leaves the L0 step nothing to do (its splitting weight starts at 2·lam and "
                         f"stops at {BETA_MAX:g}); the L0 weight is small, about 1e-3 to 1e-2 for images in [0, 1].")
    if lam_min > lam:
        raise ValueError(f"lam_min ({lam_min:g}) is the floor λ decays to, so it must not exceed lam ({lam:g}).")
    if isinstance(lam_decay, bool) or not isinstance(lam_decay, (int, float)) or not math.isfinite(lam_decay) \
            or lam_decay < 1:
        raise ValueError(f"lam_decay must be a finite number >= 1 (λ is divided by it each iteration), got {lam_decay!r}.")
    for value, name in ((threshold, "threshold"), (min_mass, "min_mass")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}.")
        if not 0 <= value < 0.5:
            raise ValueError(f"{name} is a fraction (of the kernel's largest entry, or of its total) in [0, 0.5): "
                             f"larger ones clean almost every kernel away. Got {value!r}.")
    if work_dtype not in (None, torch.float32, torch.float64):
        raise TypeError(f"work_dtype must be torch.float32, torch.float64 or None (the device's default), got {work_dtype!r}.")


def estimate_kernel(
    y: torch.Tensor,
    size: int = 31,
    iterations: int = 10,
    lam: float = 4e-3,
    lam_decay: float = 1.05,
    lam_min: float = 1e-4,
    gamma: float = 2.0,
    threshold: float = 0.1,
    min_mass: float = 0.1,
    work_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""The blur kernel of each blurry image, from the image alone (see the module docstring).

    Args:
        y: blurry gray images, (B, 1, H, W), each at least 2·size pixels on a side.
        size: side of the estimated kernels (odd); a shake longer than this cannot be found.
        iterations: alternations of the latent-image and kernel steps per pyramid level.
        lam, lam_decay, lam_min: the L0 weight, divided by ``lam_decay`` each iteration down to ``lam_min``.
        gamma: the kernel's ridge weight γ.
        threshold, min_mass: the cleaning rules (:func:`clean_kernel`).
        work_dtype: the dtype computed in (default: float64 on the CPU, float32 on CUDA, where
            float64 is slow; on the tune split the two score within a tenth of a dB).
    Returns:
        (B, 1, size, size) kernels, non-negative, summing to 1, centred on their centre of mass,
        in y's dtype (float32 for half precision). Not differentiated: y is detached.
    Example:
        >>> from deblur_edu.kernels import motion
        >>> from deblur_edu.physics import Blur
        >>> y = Blur(motion(7, 0), "valid")(torch.rand(1, 1, 70, 70).round())
        >>> estimate_kernel(y, size=9, iterations=3).shape
        torch.Size([1, 1, 9, 9])
    """
    y = check_image(y, "y")
    if y.shape[1] != 1:
        raise ValueError(f"estimate_kernel takes gray images (B, 1, H, W), got {y.shape[1]} channels; "
                         "estimate on the gray image (e.g. the channels' mean) and use the kernel for every channel.")
    check_settings(size, iterations, lam, lam_decay, lam_min, gamma, threshold, min_mass, work_dtype)
    if min(y.shape[-2:]) < 2 * size:
        raise ValueError(f"an image of {tuple(y.shape[-2:])} pixels is too small to estimate a {size}-px kernel: "
                         f"it needs at least {2 * size} pixels on each side. Use a smaller size or a larger image.")
    work = work_dtype or (torch.float32 if y.is_cuda else torch.float64)
    y_work = y.detach().to(work)
    k = None
    for s in pyramid_sizes(size):
        level = y_work if s == size else F.interpolate(y_work, scale_factor=s / size, mode="bilinear",
                                                       antialias=True, align_corners=False)
        level = periodic_extension(level, s)
        k = identity_kernel(level.new_zeros(len(y), 1, s, s)) if k is None else resize_kernel(k, s)
        weight = lam
        for _ in range(iterations):
            x = l0_gradient_deblur(level, k, weight)
            k = clean_kernel(kernel_least_squares(x, level, k, gamma), threshold, min_mass)
            weight = max(weight / lam_decay, lam_min)
    return centre_kernel(k).to(fft_dtype(y.dtype))


def blind_deconvolve(y: torch.Tensor, deconvolve: NonBlindMethod, size: int = 31,
                     **estimate) -> tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``y`` knowing nothing else: :func:`estimate_kernel` (``estimate``: its settings), then the
    non-blind ``deconvolve(y, k̂, σ̂)`` with the estimated kernels (one per image) and the noise level
    estimated from y (the batch's median σ̂: one weight per call; a benchmark method's tuned weights
    stop falling below σ = 0.001). The kernel estimate is not differentiated; the deconvolution is, as
    far as ``deconvolve`` is.

    Example:
        >>> from deblur_edu.bench.methods import get_method
        >>> x_hat, k_hat = blind_deconvolve(y, get_method("tv"))  # doctest: +SKIP

    Returns:
        ``(x̂, k̂)``: the deblurred images (y's shape) and the estimated kernels.
    """
    if not callable(deconvolve):
        raise TypeError(f"deconvolve must be a non-blind method f(y, k, sigma) -> x_hat, e.g. "
                        f"deblur_edu.bench.methods.get_method('tv'); got {deconvolve!r}.")
    k = estimate_kernel(y, size, **estimate)
    sigma = float(estimate_noise_level(y).median())
    return deconvolve(y, k, sigma), k
