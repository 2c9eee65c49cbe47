r"""Richardson–Lucy deconvolution, correct at the borders.

Richardson (1972) and Lucy (1974) maximise the Poisson likelihood of ``y`` given ``A x``
with the multiplicative EM update

    x_{t+1} = x_t / (Aᵀ1) · Aᵀ( y / (A x_t) ).

Textbook versions drop the normaliser ``Aᵀ1`` because it is 1 for a circular blur. Here
``A`` is the ``valid`` blur — the observation sees a scene larger than itself — and
``Aᵀ1`` falls towards the scene's border (those pixels are seen by fewer observations).
Keeping it is what stops the border from degrading as iterations go on (scikit-image
pads with zeros instead and gets worse with iterations at the border).

The monotone quantity is the I-divergence ``Σ y·log(y / Ax) − y + Ax`` (EM never
increases it when ``y ≥ 0``), not the PSNR.
"""

from __future__ import annotations

import torch

from ..checks import check_iterations, check_problem
from ..metrics import psnr
from ..physics import Blur, crop, fft_dtype, pad

EPS = 1e-6


def i_divergence(y: torch.Tensor, y_model: torch.Tensor) -> torch.Tensor:
    """Csiszár's I-divergence ``Σ y log(y / ŷ) − y + ŷ`` per image (0·log 0 = 0)."""
    ratio = torch.where(y > 0, y / y_model.clamp(min=EPS), torch.ones_like(y))
    return (y * torch.log(ratio) - y + y_model).sum(dim=(1, 2, 3))


def richardson_lucy(
    y: torch.Tensor,
    k: torch.Tensor,
    iterations: int = 30,
    x_true: torch.Tensor | None = None,
    history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, list[float]]]:
    r"""Border-aware Richardson–Lucy: ``x ← x / (Aᵀ1) · Aᵀ(y / A x)`` with the ``valid`` blur.

    The estimate lives on the scene (the image plus ``h − 1`` rows and ``w − 1``
    columns), starts from ``y`` replicate-padded, and the returned image is its central
    part with ``y``'s shape. Negative noisy values are clipped to 0 (Poisson data is ≥ 0).

    Args:
        y: blurry images, (B, C, H, W).
        k: kernels, (B or 1, 1, h, w).
        iterations: number of EM updates; more = sharper but noisier.
        x_true: optional sharp images for the PSNR history.
        history: also return ``{"i_divergence": [...], "psnr": [...]}`` per iteration
            (I-divergence per batch, summed).
    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> from deblur_edu.physics import Blur
        >>> scene = torch.rand(1, 1, 40, 40)
        >>> y = Blur(gaussian(9, 1.5), "valid")(scene)
        >>> richardson_lucy(y, gaussian(9, 1.5), iterations=10).shape
        torch.Size([1, 1, 32, 32])
    """
    y, k = check_problem(y, k)
    check_iterations(iterations)
    dtype = y.dtype  # half precision: iterated in float32 (the ratios need it), returned as it came
    y = y.to(fft_dtype(dtype))  # k already is float32 then (check_problem)
    A = Blur(k, "valid", check_inputs=False)
    y = y.clamp(min=0)
    normaliser = A.adjoint(torch.ones_like(y)).clamp(min=EPS)
    x = pad(y, A.pads, "replicate").clamp(min=EPS)
    trace: dict[str, list[float]] = {"i_divergence": [], "psnr": []}
    for _ in range(iterations):
        Ax = A(x).clamp(min=EPS)
        x = x / normaliser * A.adjoint(y / Ax)
        if history:
            _record(trace, y, A(x), crop(x, A.pads), x_true)
    x_hat = crop(x, A.pads).to(dtype)
    return (x_hat, trace) if history else x_hat


def _record(trace, y, Ax, x_hat, x_true) -> None:
    trace["i_divergence"].append(float(i_divergence(y, Ax).sum()))
    if x_true is not None:
        trace["psnr"].append(float(psnr(x_hat.clamp(0, 1), x_true).mean()))
