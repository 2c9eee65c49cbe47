r"""The forward model of blur: ``y = A x + n`` with ``A`` a convolution.

A camera that shakes or is out of focus records every scene point spread over a small
neighbourhood; the spread is the *point-spread function* (PSF) or kernel ``k``, and the
recorded image is the convolution

    y[i, j] = Σ_{a,b} k[a, b] · x[i + c_h − a, j + c_w − b]  +  n[i, j],

with noise ``n ~ N(0, σ²)`` and the kernel centre ``(c_h, c_w) = (h // 2, w // 2)``
(for odd sizes the middle pixel; for even sizes the pixel just below and right of the
middle). This is true convolution (the kernel is flipped), not correlation.

What happens at the image border is a *modelling choice*, the ``boundary`` mode:

- ``"circular"``: the scene wraps around. Convolution is diagonal in the Fourier basis
  (``A = F⁻¹ diag(K) F``), so it is fast and easy to invert — but real cameras do not
  see a periodic world, and methods that assume it ring at the borders.
- ``"valid"``: the observation is *smaller* than the scene: ``y`` (H×W) depends on a scene
  ``x`` of size (H + h − 1)×(W + w − 1). This is the physically right model — the pixels
  just outside the frame were blurred into it.
- ``"replicate"`` / ``"reflect"``: the scene is the image itself, extended past its
  border by copying (replicate) or mirroring (reflect), then blurred with ``valid``.

Every mode has an exact adjoint ``Aᵀ`` with ``⟨A x, y⟩ = ⟨x, Aᵀ y⟩`` (tested).
All operations are batched over ``(B, C, H, W)`` tensors, differentiable, and run
unchanged on CPU or CUDA. Convolutions use real FFTs (``torch.fft.rfft2``); half-precision
images (float16, bfloat16 — mixed-precision training makes them) are transformed in float32,
since torch's FFTs refuse bfloat16 and take float16 only on CUDA at powers of two, and the
result is returned in the input's dtype (:func:`rfft2`, :func:`irfft2`).
"""

from __future__ import annotations

import torch

from .checks import (
    check_batch_match,
    check_image,
    check_kernel,
    check_kernel_fits,
    check_sigma,
)

BOUNDARIES = ("circular", "valid", "replicate", "reflect")
#: dtypes whose FFTs are computed in float32
HALF_PRECISION = (torch.float16, torch.bfloat16)


def fft_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype in which images of ``dtype`` are Fourier-transformed: float32 for half
    precision, else ``dtype`` itself.

    Example:
        >>> fft_dtype(torch.bfloat16), fft_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float32 if dtype in HALF_PRECISION else dtype


def rfft2(x: torch.Tensor) -> torch.Tensor:
    """``torch.fft.rfft2`` of the last two axes that also takes half precision (in float32)."""
    return torch.fft.rfft2(x.to(fft_dtype(x.dtype)))


def irfft2(X: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.fft.irfft2`` at ``shape``, returned in ``dtype`` (default: the transform's)."""
    x = torch.fft.irfft2(X, s=shape)
    return x if dtype is None else x.to(dtype)


def kernel_centre(h: int, w: int) -> tuple[int, int]:
    """Index of the kernel's centre pixel: ``(h // 2, w // 2)``.

    For an even size the centre is the lower/right of the two middle pixels; a kernel
    that is a single 1 at this position leaves images unchanged.

    Example:
        >>> kernel_centre(3, 4)
        (1, 2)
    """
    return h // 2, w // 2


def scene_padding(h: int, w: int) -> tuple[int, int, int, int]:
    """Pixels the ``valid`` scene extends past the observation: (top, bottom, left, right).

    Output pixel ``i`` sees scene pixels ``i − (h − 1 − c_h) … i + c_h``, so the scene is
    ``h − 1`` rows taller: ``h − 1 − c_h`` rows above and ``c_h`` below.

    Example:
        >>> scene_padding(5, 4)
        (2, 2, 1, 2)
    """
    ch, cw = kernel_centre(h, w)
    return h - 1 - ch, ch, w - 1 - cw, cw


def fast_fft_size(n: int) -> int:
    """Smallest m ≥ n whose prime factors are 2, 3 and 5 only — sizes where FFTs are fast.

    Example:
        >>> fast_fft_size(283)
        288
    """
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def psf2otf(k: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    r"""Optical transfer function: the real FFT of the kernel, centred at the origin.

    Zero-pads ``k`` to ``shape`` and rolls its centre ``(c_h, c_w)`` to pixel (0, 0), so
    that circular convolution is a product in Fourier space:
    ``rfft2(k ⊛ x) = psf2otf(k, x.shape[-2:]) · rfft2(x)``  (MATLAB's ``psf2otf``).

    Args:
        k: kernels, (B, 1, h, w) or (h, w), with h ≤ H and w ≤ W.
        shape: (H, W) of the images it will be applied to.
    Returns:
        complex tensor (B, 1, H, W // 2 + 1) — the half-spectrum of ``rfft2``.

    Example:
        >>> k = torch.ones(3, 3) / 9
        >>> round(float(psf2otf(k, (8, 8))[0, 0, 0, 0].real), 6)  # DC gain = the kernel's sum
        1.0
    """
    if k.dim() == 2:
        k = k[None, None]
    h, w = k.shape[-2:]
    H, W = shape
    check_kernel_fits((H, W), k)
    padded = k.new_zeros(*k.shape[:-2], H, W)
    padded[..., :h, :w] = k
    ch, cw = kernel_centre(h, w)
    padded = torch.roll(padded, shifts=(-ch, -cw), dims=(-2, -1))
    return rfft2(padded)


def fft_convolve(x: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
    """Circular convolution ``irfft2(otf · rfft2(x))`` at x's size, in x's dtype."""
    return irfft2(rfft2(x) * otf, x.shape[-2:], x.dtype)


def fft_correlate(y: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
    """Circular correlation, the adjoint of :func:`fft_convolve`: multiply by conj(otf)."""
    return irfft2(rfft2(y) * otf.conj(), y.shape[-2:], y.dtype)


def pad_indices(n: int, before: int, after: int, mode: str, device=None) -> torch.Tensor:
    """Source index of every pixel of a padded axis of length ``before + n + after``.

    Padding is a copy ``x_pad[i] = x[idx[i]]``; ``mode`` sets ``idx`` outside [0, n):
    ``replicate`` clamps (…a a | a b c | c c…), ``reflect`` mirrors without repeating the
    edge (…c b | a b c | b a…), ``circular`` wraps (…b c | a b c | a b…).

    Example:
        >>> pad_indices(3, 2, 2, "reflect").tolist()
        [2, 1, 0, 1, 2, 1, 0]
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "replicate":
        return i.clamp(0, n - 1)
    if mode == "circular":
        return i % n
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * (n - 1)
        i = i % period
        return torch.where(i > n - 1, period - i, i)
    raise ValueError(f"unknown padding mode {mode!r}; use 'replicate', 'reflect' or 'circular'.")


def pad(x: torch.Tensor, pads: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """Pad the last two axes by (top, bottom, left, right) with a gather (see :func:`pad_indices`)."""
    top, bottom, left, right = pads
    rows = pad_indices(x.shape[-2], top, bottom, mode, x.device)
    cols = pad_indices(x.shape[-1], left, right, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def pad_adjoint(z: torch.Tensor, pads: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """Adjoint of :func:`pad`: every padded pixel is *added back* onto its source pixel.

    Padding copies ``x[idx[i]]`` to position ``i``; its transpose scatters
    ``z[i]`` back with ``index_add`` — border pixels collect the copies made of them.
    """
    top, bottom, left, right = pads
    H = z.shape[-2] - top - bottom
    W = z.shape[-1] - left - right
    rows = pad_indices(H, top, bottom, mode, z.device)
    cols = pad_indices(W, left, right, mode, z.device)
    out = z.new_zeros(*z.shape[:-2], z.shape[-2], W).index_add(-1, cols, z)
    return out.new_zeros(*z.shape[:-2], H, W).index_add(-2, rows, out)


def crop(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Remove (top, bottom, left, right) pixels from the last two axes."""
    top, bottom, left, right = pads
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


def zero_pad(y: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Adjoint of :func:`crop`: place ``y`` inside a zero frame."""
    top, bottom, left, right = pads
    return torch.nn.functional.pad(y, (left, right, top, bottom))


class Blur:
    r"""The blur operator ``A`` for one boundary model, with its exact adjoint.

    ``A x = k ⊛ x`` under the chosen ``boundary`` (see the module docstring):

    ============  ==========================  =================================
    boundary      input ``x``                 output ``y = A x``
    ============  ==========================  =================================
    circular      (B, C, H, W)                (B, C, H, W), wrap-around
    valid         (B, C, H+h−1, W+w−1)        (B, C, H, W), only fully-seen pixels
    replicate     (B, C, H, W)                (B, C, H, W), edge pixels copied
    reflect       (B, C, H, W)                (B, C, H, W), mirrored at the edge
    ============  ==========================  =================================

    ``A.adjoint(y)`` (also ``A.T(y)``) applies ``Aᵀ`` with ``⟨A x, y⟩ = ⟨x, Aᵀ y⟩``.

    Args:
        k: kernels, (B, 1, h, w) — one per image — or (1, 1, h, w)/(h, w) shared by all.
           Non-negative, finite, summing to 1 (refused otherwise; see ``validation``).
        boundary: one of ``BOUNDARIES``.
        check_inputs: validate images on every call (set False inside tight loops
           that already validated their input).

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> x = torch.rand(2, 1, 64, 64)
        >>> A = Blur(gaussian(9, 1.5), boundary="valid")
        >>> A(x).shape
        torch.Size([2, 1, 56, 56])
        >>> A.adjoint(A(x)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, k: torch.Tensor, boundary: str = "circular", check_inputs: bool = True):
        if boundary not in BOUNDARIES:
            raise ValueError(f"unknown boundary mode {boundary!r}; choose one of {BOUNDARIES}.")
        self.k = check_kernel(k)
        self.boundary = boundary
        self.check_inputs = check_inputs
        self.pads = scene_padding(*self.k.shape[-2:])
        self._otf_cache: dict[tuple, torch.Tensor] = {}

    # ----- shapes ---------------------------------------------------------------------
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``A x`` for an ``x`` of ``input_shape``."""
        if self.boundary != "valid":
            return tuple(input_shape)
        top, bottom, left, right = self.pads
        return (*input_shape[:-2], input_shape[-2] - top - bottom, input_shape[-1] - left - right)

    def input_shape(self, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the scene ``x`` that produces an observation of ``output_shape``."""
        if self.boundary != "valid":
            return tuple(output_shape)
        top, bottom, left, right = self.pads
        return (*output_shape[:-2], output_shape[-2] + top + bottom, output_shape[-1] + left + right)

    # ----- the operator ---------------------------------------------------------------
    def otf(self, shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """The kernel's OTF at ``shape``, on ``like``'s device, for ``like``'s dtype (complex64
        for half precision; cached when k is constant)."""
        k = self.k.to(device=like.device, dtype=fft_dtype(like.dtype))
        if k.requires_grad:
            return psf2otf(k, shape)
        key = (tuple(shape), like.device, like.dtype)
        if key not in self._otf_cache:
            self._otf_cache[key] = psf2otf(k, shape)
        return self._otf_cache[key]

    def _check(self, t: torch.Tensor, name: str, needs_scene: bool) -> None:
        if not self.check_inputs:
            return
        check_image(t, name, value_range=False)  # A also acts on residuals and ratios
        check_batch_match(t, self.k, name)
        if needs_scene:
            top, bottom, left, right = self.pads
            if t.shape[-2] <= top + bottom or t.shape[-1] <= left + right:
                raise ValueError(
                    f"the valid-mode scene {tuple(t.shape[-2:])} must be larger than the "
                    f"kernel {tuple(self.k.shape[-2:])}; the output would be empty."
                )
        else:
            check_kernel_fits(t.shape, self.k, name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``y = A x``."""
        self._check(x, "x", needs_scene=self.boundary == "valid")
        if self.boundary == "circular":
            return fft_convolve(x, self.otf(x.shape[-2:], x))
        if self.boundary != "valid":
            x = pad(x, self.pads, self.boundary)
        y_full = fft_convolve(x, self.otf(x.shape[-2:], x))
        return crop(y_full, self.pads)

    forward = __call__

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Aᵀ y``: correlation with k, then the adjoint of the boundary extension."""
        self._check(y, "y", needs_scene=False)
        if self.boundary == "circular":
            return fft_correlate(y, self.otf(y.shape[-2:], y))
        z = zero_pad(y, self.pads)
        x = fft_correlate(z, self.otf(z.shape[-2:], z))
        if self.boundary == "valid":
            return x
        return pad_adjoint(x, self.pads, self.boundary)

    T = adjoint

    def __repr__(self) -> str:
        return f"Blur(kernel={tuple(self.k.shape)}, boundary={self.boundary!r})"


def blur(x: torch.Tensor, k: torch.Tensor, boundary: str = "circular") -> torch.Tensor:
    """Functional form of :class:`Blur`: ``Blur(k, boundary)(x)``."""
    return Blur(k, boundary)(x)


def add_noise(
    y: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add white Gaussian noise ``n ~ N(0, σ²)``, drawn reproducibly.

    The noise is drawn on the CPU from ``generator`` (a ``torch.Generator``; pass one
    seeded with ``manual_seed`` for reproducible experiments) and then moved to ``y``'s
    device, so the same seed gives the same noise on CPU and CUDA. The result is not
    clipped: a real sensor's read noise can take values outside [0, 1].

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = add_noise(torch.zeros(1, 1, 4, 4), 0.1, g)
    """
    sigma = check_sigma(sigma)
    noise = torch.randn(y.shape, generator=generator, dtype=torch.float32, device="cpu")
    return y + sigma * noise.to(device=y.device, dtype=y.dtype)
