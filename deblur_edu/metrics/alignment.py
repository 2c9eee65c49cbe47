r"""Scoring a blind method: align its output to the truth first.

A blind method never learns where the true kernel sat in its frame. Blurring ``x`` with ``k``
and with ``k`` shifted by ``d`` pixels gives the same ``y`` up to a shift of ``d``, so from
``y`` alone the sharp image is defined only up to a translation. A blind method settles it by a
convention (here: the kernel's centre of mass is its centre pixel), and a benchmark whose
kernels do not follow it — Levin et al.'s are off centre by up to 3.3 px — would score even a
perfect blind method as if it had failed: told Levin's kernels re-centred on their centre of mass,
TV drops from 29.4 to 23.2 dB at σ = 0.01 (``python -m deblur_edu.experiments.ch5_blind_shift``).

So blind benchmarks align before scoring (Levin, Weiss, Durand & Freeman, CVPR 2009; Köhler et
al., ECCV 2012; Lai et al., CVPR 2016): each estimate is scored at the shift ``(dy, dx)`` within
``±max_shift`` pixels (plus the last fractions) that brings it closest to the truth,

    x̂_aligned = argmin_{(dy, dx)} ‖(S_{dy,dx} x̂ − x)|_interior‖²,

searched on whole pixels first, then on finer grids around the best (:data:`FRACTION_STEPS`, to
1/16 px). A shift is a phase ramp in the Fourier domain, ``F[S_d x̂](ω) = F[x̂](ω)·e^{−2πi ω·d}``:
exact for whole pixels (what wraps around the border lies outside the scored interior), and
band-limited interpolation for fractions (whose ripples from the image's border fade within a
few pixels; the interior leaves ``max_shift + 1`` more out). Every method of a run is scored this
way, the blurry input included, so that gains stay comparable.
"""

from __future__ import annotations

import torch

from ..checks import check_image


def fourier_shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) shifted circularly by (dy, dx) pixels each (tensors of shape (B,);
    fractions allowed): pixel (i, j) of the result is pixel (i − dy, j − dx) of x."""
    return _shifted(torch.fft.rfft2(x), x.shape[-2:], dy, dx).to(x.dtype)


def _shifted(X: torch.Tensor, shape: torch.Size, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    H, W = shape
    real = X.real.dtype
    fy = torch.fft.fftfreq(H, device=X.device, dtype=real)[:, None]
    fx = torch.fft.rfftfreq(W, device=X.device, dtype=real)[None, :]
    dy, dx = (d.to(device=X.device, dtype=real).view(-1, 1, 1, 1) for d in (dy, dx))
    phase = fy * dy + fx * dx
    return torch.fft.irfft2(X * torch.polar(torch.ones_like(phase), -2 * torch.pi * phase), s=(H, W))


def _interior_mse(x_hat: torch.Tensor, x: torch.Tensor, crop: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    d = x_hat[..., crop:H - crop, crop:W - crop] - x[..., crop:H - crop, crop:W - crop]
    return (d**2).mean(dim=(1, 2, 3))


#: the sub-pixel search: steps of a quarter pixel within half a pixel of the best whole shift, then
#: steps of 1/16 within an eighth of the best of those (25 shifts each)
FRACTION_STEPS = ((0.25, 2), (0.0625, 2))


def align_to(x_hat: torch.Tensor, x: torch.Tensor, max_shift: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each ``x̂`` shifted to best match ``x`` on the interior that leaves ``crop + max_shift + 1``
    pixels out at every border (see the module docstring): whole pixels within ±``max_shift``, then
    fractions (:data:`FRACTION_STEPS`, to 1/16 px).

    Args:
        x_hat, x: (B, C, H, W) estimates and truths.
        max_shift: the largest shift searched, in whole pixels (0: no search; x̂ returned as it is).
        crop: the border the score leaves out anyway; the search leaves ``max_shift + 1`` more.
    Returns:
        ``(aligned, shifts)``: the shifted estimates, and the (B, 2) shifts (dy, dx) applied.
    Example:
        >>> x = torch.rand(2, 1, 40, 40)
        >>> _, shifts = align_to(x.roll((2, -1), (-2, -1)), x, max_shift=3, crop=0)
        >>> shifts.tolist()
        [[-2.0, 1.0], [-2.0, 1.0]]
    """
    x_hat, x = check_image(x_hat, "x_hat"), check_image(x, "x")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have the same shape to be aligned.")
    for value, name in ((max_shift, "max_shift"), (crop, "crop")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number of pixels >= 0, got {value!r}.")
    B, (H, W), dt = x.shape[0], x.shape[-2:], x_hat.dtype  # multiples of 1/16 are exact in float32
    best = torch.zeros(B, 2, device=x.device, dtype=dt)
    if max_shift == 0:
        return x_hat, best
    m = crop + max_shift + 1
    if min(H, W) <= 2 * m:
        raise ValueError(f"images of {(H, W)} pixels leave nothing to score after a border of {m} "
                         f"(crop {crop} + max_shift {max_shift} + 1); use a smaller max_shift or larger images.")
    best_err = torch.full((B,), float("inf"), device=x.device, dtype=dt)

    def consider(shift: torch.Tensor, err: torch.Tensor) -> None:
        nonlocal best, best_err
        better = err < best_err
        best = torch.where(better[:, None], shift, best)
        best_err = torch.where(better, err, best_err)

    target = x[..., m:H - m, m:W - m]
    for dy in range(-max_shift, max_shift + 1):  # whole pixels: slices, no FFT
        for dx in range(-max_shift, max_shift + 1):
            moved = x_hat[..., m - dy:H - m - dy, m - dx:W - m - dx]
            consider(torch.tensor([[dy, dx]], device=x.device, dtype=dt).expand(B, 2),
                     ((moved - target) ** 2).mean(dim=(1, 2, 3)))
    X = torch.fft.rfft2(x_hat)
    for step, reach in FRACTION_STEPS:
        start = best.clone()
        for i in range(-reach, reach + 1):
            for j in range(-reach, reach + 1):
                shift = start + torch.tensor([i * step, j * step], device=x.device, dtype=dt)
                consider(shift, _interior_mse(_shifted(X, (H, W), shift[:, 0], shift[:, 1]), x, m))
    return _shifted(X, (H, W), best[:, 0], best[:, 1]).to(x_hat.dtype), best
