"""Blur kernels (point-spread functions): defocus, motion, camera shake (single and batched).

Every function returns a float tensor of shape ``(1, 1, h, w)`` (``camera_shakes``: ``(n, 1, h, w)``,
one kernel per image) that is non-negative and sums to 1, ready for :class:`deblur_edu.physics.Blur`. Random kernels take an explicit
``torch.Generator`` so experiments are reproducible.
"""

from __future__ import annotations

import math

import torch

from .checks import check_positive


def normalise(k: torch.Tensor) -> torch.Tensor:
    """``k / Σk`` as a (1, 1, h, w) kernel."""
    return (k / k.sum()).reshape(1, 1, *k.shape[-2:])


def _grid(size: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (rows, cols) relative to the kernel centre ``size // 2``."""
    r = torch.arange(size, dtype=dtype) - size // 2
    return torch.meshgrid(r, r, indexing="ij")


def gaussian(size: int, std: float, dtype=torch.float32) -> torch.Tensor:
    """Isotropic Gaussian kernel ``k(u, v) ∝ exp(−(u² + v²) / (2·std²))`` on a size×size grid.

    A model of atmospheric turbulence or a mildly defocused lens.

    Example:
        >>> gaussian(7, 1.0).shape
        torch.Size([1, 1, 7, 7])
    """
    check_positive(std, "std")
    u, v = _grid(size, torch.float64)
    return normalise(torch.exp(-(u**2 + v**2) / (2 * std**2))).to(dtype)


def disk(radius: float, size: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """Uniform disk (pillbox) of the given radius: the PSF of an out-of-focus lens.

    Edge pixels get their fractional coverage (estimated on a 16×16 sub-pixel grid), so
    the kernel changes smoothly with ``radius``.

    Example:
        >>> disk(3.0).shape
        torch.Size([1, 1, 7, 7])
    """
    check_positive(radius, "radius")
    size = size or 2 * math.ceil(radius) + 1
    sub = 16
    offsets = (torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5
    u, v = _grid(size, torch.float64)
    uu = u[..., None, None] + offsets[:, None]
    vv = v[..., None, None] + offsets[None, :]
    coverage = ((uu**2 + vv**2) <= radius**2).double().mean(dim=(-2, -1))
    return normalise(coverage).to(dtype)


def _rasterise(points: torch.Tensor, size: int) -> torch.Tensor:
    """Splat sub-pixel points (N, 2) (row, col relative to the centre) bilinearly on a grid."""
    return rasterise_batch(points[None], size)[0]


def rasterise_batch(points: torch.Tensor, size: int) -> torch.Tensor:
    r"""Splat sub-pixel points (B, N, 2) (row, col relative to the centre) bilinearly on B grids.

    A point at (r, c) gives pixel (i, j) — both counted from the grid's centre ``size // 2`` —
    the weight ``tent(r − i) · tent(c − j)`` with ``tent(x) = max(0, 1 − |x|)``: exactly its four
    bilinear weights, and nothing to pixels further away or off the grid. Summed over the
    points, the grid is a sum of outer products,

    .. math::  K = R^\top C, \qquad R_{ni} = \mathrm{tent}(r_n - i),\quad C_{nj} = \mathrm{tent}(c_n - j),

    one batched matrix product: no scatter, so no atomic additions whose order would change
    the last bits from run to run on a GPU, and no host synchronisation. (A matrix product's
    last bits may still depend on the BLAS library, the processor's vector unit, TF32 or
    autocast settings: reproducible on one machine, not across all.)
    Returns (B, size, size) on ``points``' device.
    """
    grid = torch.arange(size, dtype=points.dtype, device=points.device) - size // 2

    def tents(u: torch.Tensor) -> torch.Tensor:  # (B, N) coordinates -> (B, N, size) weights, in place
        return (u[..., None] - grid).abs_().neg_().add_(1).clamp_(min=0)

    R, C = tents(points[..., 0]), tents(points[..., 1])
    return R.transpose(1, 2) @ C


def motion(length: float, angle: float, size: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """Linear motion blur: a segment of ``length`` pixels at ``angle`` degrees (counter-clockwise).

    The segment is sampled densely and rasterised with bilinear weights, so non-integer
    lengths and any angle are exact up to interpolation.

    Example:
        >>> motion(9, 30).shape
        torch.Size([1, 1, 11, 11])
    """
    check_positive(length, "length")
    size = size or 2 * math.ceil(length / 2) + 1
    t = torch.linspace(-0.5, 0.5, max(int(length * 8), 2), dtype=torch.float64) * length
    a = math.radians(angle)
    points = torch.stack([-t * math.sin(a), t * math.cos(a)], dim=1)
    return normalise(_rasterise(points, size)).to(dtype)


def camera_shake(
    size: int = 25,
    generator: torch.Generator | None = None,
    extent: float | None = None,
    steps: int = 64,
    dtype=torch.float32,
) -> torch.Tensor:
    """A random camera-shake kernel: a smooth 2-D trajectory rasterised sub-pixel.

    The camera's velocity is a random walk (white acceleration), so the position — its
    running sum — is a smooth curve, as for a hand-held camera during the exposure
    (in the spirit of Boracchi & Foi, "Modeling the performance of image restoration
    from motion blur", IEEE TIP 2012). The curve is scaled so its longest side spans
    ``extent`` pixels (default: uniform in [0.3, 0.9]·(size − 2)), sampled 16× per step,
    centred on its centre of mass, and rasterised with bilinear weights.
    :func:`camera_shakes` draws a whole batch at once.

    Args:
        size: kernel side (odd is customary).
        generator: seeded ``torch.Generator`` for reproducibility.
        extent: length in pixels of the trajectory's longest side.
        steps: number of random-walk steps.
    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> k = camera_shake(21, g)
        >>> k.shape, round(float(k.sum()), 5)
        (torch.Size([1, 1, 21, 21]), 1.0)
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    acc = torch.randn(steps, 2, generator=generator, dtype=torch.float64)
    velocity = torch.randn(1, 2, generator=generator, dtype=torch.float64) * 2 + torch.cumsum(acc, 0)
    path = torch.cumsum(velocity, 0)
    if extent is None:
        extent = float(0.3 + 0.6 * torch.rand(1, generator=generator, dtype=torch.float64)) * (size - 2)
    points = shake_trajectory(path[None], torch.tensor([extent], dtype=torch.float64))[0]
    return normalise(_rasterise(points, size)).to(dtype)


def shake_trajectory(path: torch.Tensor, extent: torch.Tensor, oversample: int = 16) -> torch.Tensor:
    """Sub-sample piecewise-linear paths (B, steps, 2) ``oversample``× per step, centre each on
    its centre of mass and scale it so its longest side spans ``extent`` (B,) pixels."""
    steps = path.shape[1]
    t = torch.linspace(0, steps - 1, oversample * steps, dtype=path.dtype, device=path.device)
    i0 = t.floor().long().clamp(max=steps - 2)
    f = (t - i0)[:, None]
    points = path.index_select(1, i0) * (1 - f) + path.index_select(1, i0 + 1) * f
    span = (points.amax(1) - points.amin(1)).amax(1).clamp(min=1e-6)
    return (points - points.mean(1, keepdim=True)) * (extent / span)[:, None, None]


def camera_shakes(
    n: int,
    size: int = 31,
    generator: torch.Generator | None = None,
    extent_range: tuple[float, float] = (0.3, 0.9),
    steps: int = 64,
    device: torch.device | str | None = None,
    dtype=torch.float32,
) -> torch.Tensor:
    """A batch of ``n`` random camera-shake kernels, drawn at once on ``device``.

    The same model as :func:`camera_shake` — a random-walk velocity, its running sum as the
    path, scaled so its longest side spans ``extent = U(extent_range)·(size − 2)`` pixels,
    rasterised bilinearly — with every kernel of the batch made by the same few tensor
    operations (no loop over kernels), so a GPU can synthesise them beside training. The
    draws come from ``generator``, which must live on ``device`` (a CPU generator for CPU).
    Drawn and rasterised in float32 (sub-pixel positions on a 31-px grid need no more);
    ``dtype`` is the returned kernels'.

    Returns:
        (n, 1, size, size), each non-negative and summing to 1.
    Example:
        >>> k = camera_shakes(4, 31, torch.Generator().manual_seed(0), extent_range=(0.1, 0.9))
        >>> k.shape, torch.allclose(k.sum(dim=(-2, -1)), torch.ones(4, 1))
        (torch.Size([4, 1, 31, 31]), True)
    """
    lo, hi = extent_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"extent_range must satisfy 0 < low <= high <= 1 (fractions of size - 2), got {extent_range}.")
    device = torch.device(device) if device is not None else (generator.device if generator is not None else None)
    # float32 throughout: sub-pixel positions within a 31-px grid need no more (the single
    # camera_shake keeps float64, so the benchmark's tune kernels stay what they were)
    opts = {"generator": generator, "dtype": torch.float32, "device": device}
    acc = torch.randn(n, steps, 2, **opts)
    velocity = torch.randn(n, 1, 2, **opts) * 2 + torch.cumsum(acc, 1)
    path = torch.cumsum(velocity, 1)
    extent = (lo + (hi - lo) * torch.rand(n, **opts)) * (size - 2)
    k = rasterise_batch(shake_trajectory(path, extent), size)
    return (k / k.sum(dim=(-2, -1), keepdim=True)).to(dtype)[:, None]


def pad_to(k: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a kernel to size×size keeping its centre ``(h // 2, w // 2)`` at ``size // 2``.

    Lets kernels of different sizes be stacked into one batch.
    """
    h, w = k.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"kernel {h}×{w} does not fit in {size}×{size}; choose a larger size.")
    c = size // 2
    top, left = c - h // 2, c - w // 2
    out = k.new_zeros(*k.shape[:-2], size, size)
    out[..., top : top + h, left : left + w] = k
    return out


# ----- where a kernel sits in its frame -------------------------------------------------------
def centre_kernel(k: torch.Tensor) -> torch.Tensor:
    """Shift each kernel so that its centre of mass is exactly its centre pixel: a circular roll by
    whole pixels, then a bilinear shift by the fraction left (:func:`shift_by_fraction`).
    Non-negative kernels stay non-negative and keep their sum. Exact for a kernel that keeps clear of
    its support's edge; one that reaches it is wrapped around by the roll, and its centre of mass
    then ends up near, not at, the centre."""
    h, w = k.shape[-2:]
    rows = torch.arange(h, device=k.device)
    cols = torch.arange(w, device=k.device)
    cy = centre_of_mass(k, -2).round().long()  # (B, 1)
    cx = centre_of_mass(k, -1).round().long()
    take_rows = (rows + cy[..., None]) % h  # (B, 1, h): row i takes row i + offset
    take_cols = (cols + cx[..., None]) % w
    k = k.gather(-2, take_rows[..., :, None].expand(k.shape))
    k = k.gather(-1, take_cols[..., None, :].expand(k.shape))
    for dim in (-2, -1):  # what is left is at most half a pixel, unless the roll wrapped part of the kernel
        k = shift_by_fraction(k, centre_of_mass(k, dim).clamp(-0.5, 0.5), dim)
    return k


def centre_of_mass(k: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, 1) offset of each kernel's centre of mass from its centre pixel along ``dim`` (-2 rows, -1 columns)."""
    n = k.shape[dim]
    position = torch.arange(n, device=k.device, dtype=k.dtype) - n // 2
    profile = k.sum(dim=-1 if dim == -2 else -2)  # (B, 1, n)
    return (profile * position).sum(-1) / profile.sum(-1).clamp(min=torch.finfo(k.dtype).tiny)


def shift_by_fraction(k: torch.Tensor, f: torch.Tensor, dim: int) -> torch.Tensor:
    """Move each kernel by ``-f`` pixels along ``dim`` (|f| ≤ ½, one per kernel) by linear interpolation:
    ``k'[i] = (1 − |f|)·k[i] + |f|·k[i + sign f]``. The centre of mass moves by exactly −f; the price is
    a two-tap blur of at most ½ pixel."""
    f = f.reshape(*f.shape, 1, 1).to(k.dtype)
    return (1 - f.abs()) * k + f.clamp(min=0) * k.roll(-1, dim) + (-f).clamp(min=0) * k.roll(1, dim)
