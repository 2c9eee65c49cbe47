"""Input checks shared by every public function.

Each check raises a ``TypeError`` (wrong kind of object or dtype) or a ``ValueError``
(wrong shape or value) whose message says what is wrong *and* how to fix it. Deblurring
code that silently accepts a 0–255 image or a kernel that does not sum to one produces a
wrong answer without complaint; these checks make such mistakes loud.

Kernels that do not sum to one are **refused**, never silently normalised: blur must
preserve brightness, and a kernel that does not is almost always a bug upstream.
"""

from __future__ import annotations

import math

import torch

#: Relative tolerance on ``k.sum() == 1``.
KERNEL_SUM_TOL = 1e-3
#: Images whose maximum exceeds this look like 0–255 data.
MAX_PLAUSIBLE_VALUE = 2.0


def check_float_tensor(t: object, name: str) -> torch.Tensor:
    """Refuse anything that is not a real floating-point tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(t).__name__}; "
            f"convert with torch.as_tensor({name}, dtype=torch.float32)."
        )
    if t.is_complex():
        raise TypeError(
            f"{name} has complex dtype {t.dtype}; pass a real tensor "
            f"(e.g. {name}.real) — images and kernels are real."
        )
    if not t.is_floating_point():
        raise TypeError(
            f"{name} has integer dtype {t.dtype}; convert it to float in [0, 1], "
            f"e.g. {name}.float() / 255 for 8-bit data."
        )
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Refuse NaN and Inf values."""
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN/Inf value(s); clean the input "
            f"(e.g. torch.nan_to_num) or find where they were produced."
        )


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """A (B, H, W, C) array read as (B, C, H, W): more than 4 "channels" and a last axis of 1–4
    "pixels" — an RGB(A) or gray photo from numpy or PIL, not a plausible image batch.

    Example:
        >>> looks_channels_last((1, 32, 32, 3)), looks_channels_last((1, 3, 32, 32))
        (True, False)
    """
    return len(shape) == 4 and shape[1] > 4 and shape[-1] <= 4


def check_image(x: object, name: str = "image", value_range: bool = True) -> torch.Tensor:
    """Check an image batch: a finite float tensor of shape (B, C, H, W).

    Values may leave [0, 1] (a noisy observation does), but with ``value_range`` a
    maximum above ``MAX_PLAUSIBLE_VALUE`` looks like 0–255 data and is refused. A
    channels-last layout (:func:`looks_channels_last`) is refused with the permute that fixes it
    (otherwise the next error would be about a kernel "larger than the 32×3 image"). Operators
    such as ``Blur`` also act on residuals, ratios and gradients, and skip that test.
    """
    x = check_float_tensor(x, name)
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have 4 dimensions (B, C, H, W), got shape {tuple(x.shape)}; "
            f"add batch/channel axes with {name}[None, None] for a single 2-D image."
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}).")
    if looks_channels_last(x.shape):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, which looks channels-last (B, H, W, C); images are "
            f"(B, C, H, W): use {name}.permute(0, 3, 1, 2)."
        )
    peak = float(x.detach().abs().amax())  # one pass: NaN or Inf shows up here too
    if not math.isfinite(peak):
        check_finite(x, name)
    if value_range and peak > MAX_PLAUSIBLE_VALUE:
        lowest = float(x.detach().amin())
        where = f"as low as {lowest:.1f}" if -lowest >= peak else f"up to {peak:.1f}"
        raise ValueError(
            f"{name} has values {where}; images must be "
            f"scaled to [0, 1] — if this is 8-bit data divide by 255."
        )
    return x


def check_kernel(k: object, name: str = "kernel") -> torch.Tensor:
    """Check a blur kernel batch: (B or 1, 1, h, w), finite, non-negative, sum 1.

    A 2-D ``(h, w)`` tensor is accepted and returned as ``(1, 1, h, w)``.
    """
    k = check_float_tensor(k, name)
    if k.dim() == 2:
        k = k[None, None]
    if k.dim() != 4 or k.shape[1] != 1:
        raise ValueError(
            f"{name} must have shape (B, 1, h, w) or (h, w), got {tuple(k.shape)}; "
            f"one kernel is shared by all channels of an image."
        )
    check_finite(k, name)
    if bool((k < 0).any()):
        raise ValueError(
            f"{name} has negative entries (min {float(k.min()):.3g}); a blur kernel "
            f"is a non-negative point-spread function: clip with {name}.clamp(min=0) "
            f"and renormalise."
        )
    sums = k.sum(dim=(-2, -1))
    if bool(((sums - 1).abs() > KERNEL_SUM_TOL).any()):
        raise ValueError(
            f"{name} must sum to 1 (blur preserves brightness); its sums are "
            f"{[round(float(s), 4) for s in sums.flatten()[:4]]}. Kernels are refused, "
            f"not normalised silently: use {name} / {name}.sum(dim=(-2, -1), keepdim=True)."
        )
    return k


def check_batch_match(x: torch.Tensor, k: torch.Tensor, x_name: str = "image") -> None:
    """Kernel batch must be 1 (shared) or equal to the image batch."""
    if k.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"kernel batch {k.shape[0]} does not match {x_name} batch {x.shape[0]}; "
            f"pass one kernel per image (B, 1, h, w) or one shared kernel (1, 1, h, w)."
        )


def check_kernel_fits(x_shape: tuple[int, ...], k: torch.Tensor, name: str = "image") -> None:
    """The kernel must be no larger than the image it blurs."""
    h, w = k.shape[-2:]
    if h > x_shape[-2] or w > x_shape[-1]:
        raise ValueError(
            f"kernel of size {h}×{w} is larger than the {name} ({x_shape[-2]}×{x_shape[-1]}); "
            f"use a smaller kernel or a larger image."
        )


def check_positive(value: float, name: str) -> float:
    """Regularisation weights, step sizes and penalties must be finite and > 0."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{name} must be a finite number > 0, got {value}; it sets a weight or step "
            f"size, and zero or negative values make the method undefined or divergent."
        )
    return float(value)


def check_sigma(sigma: float) -> float:
    """Noise levels are standard deviations: finite and ≥ 0."""
    if isinstance(sigma, torch.Tensor):
        sigma = float(sigma)
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool):
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__}.")
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(
            f"sigma (noise standard deviation) must be ≥ 0, got {sigma}; for images in "
            f"[0, 1] typical values are 0.01–0.05."
        )
    return float(sigma)


def check_iterations(n: int, name: str = "iterations") -> int:
    """Iteration counts are positive integers."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}.")
    if n < 1:
        raise ValueError(f"{name} must be ≥ 1, got {n}.")
    return n


def check_problem(y: object, k: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a deconvolution problem ``(y, k)``; returns k on y's device, in y's dtype —
    float32 for half-precision y, the precision the FFTs run in (a kernel rounded to
    float16 would shift every frequency the solvers divide by)."""
    y = check_image(y, "y")
    k = check_kernel(k, "k")
    check_batch_match(y, k, "y")
    check_kernel_fits(y.shape, k, "y")
    return y, k.to(device=y.device, dtype=torch.promote_types(y.dtype, torch.float32))


def check_model_dtype(y: torch.Tensor, model: torch.nn.Module, name: str) -> None:
    """A learned model takes images in its weights' dtype: refuse others with the fix.

    A float64 image given to float32 weights otherwise fails deep in the first convolution
    ("Input type (double) and bias type (float)"). The image is not cast silently: that
    would drop precision the caller asked for, and ``model.double()`` is the other fix.
    Under autocast (mixed precision) autocast itself chooses the dtypes, so any float
    image passes.
    """
    weights = next(model.parameters(), None)
    if weights is None or y.dtype == weights.dtype or torch.is_autocast_enabled(y.device.type):
        return
    raise TypeError(
        f"this {name}'s weights are {weights.dtype} but y is {y.dtype}; convert the input with "
        f"y.to({weights.dtype}) (and the kernel likewise), or the model with model.to({y.dtype})."
    )


def check_channels(y: torch.Tensor, channels: int, model: str) -> None:
    """A learned model built for ``channels`` channels refuses images with another number."""
    if y.shape[1] != channels:
        raise ValueError(f"this {model} was built for {channels} channel(s), got {y.shape[1]}; "
                         f"convert the image (e.g. to gray) or use a matching checkpoint.")
