r"""RGDN — a learned gradient-descent optimizer for non-blind deconvolution.

Gong, Zhang, Shi, van den Hengel, Shen & Zhang, "Learning Deep Gradient Descent
Optimization for Image Deconvolution", IEEE TNNLS 2020 (arXiv 1804.03368).

Plain gradient descent on the data term ``f(x) = ½‖A x − y‖²`` takes steps
``x ← x − η ∇f(x)`` with ``∇f(x) = Aᵀ(A x − y)``: it needs a hand-tuned step η and a
hand-made prior, and stalls on ill-conditioned blurs. RGDN learns the whole update. One
*update unit* of three small CNNs, shared by every step:

    g_t     = H(∇f(x_t)) − R(x_t)      H: gradient adjuster, R: learned prior (regulariser)
    x_{t+1} = x_t + D(g_t)             D: learned scaler (a spatially varying step)

starting from ``x_0 = y``, for tens of steps. Training applies the loss to *every* step's
output (recursive supervision), so each step must improve the estimate. The network never
sees the noise level.

Here ``A`` is the border-aware ``valid`` blur of :mod:`deblur_edu.physics`: the estimate
lives on the scene, (h − 1) rows and (w − 1) columns larger than ``y``, and is cropped at
the end, so borders do not ring (the released code fails there — its issues #7, #9).
Switches turn H, R, D off for ablations (H → identity, R → 0, D → a learned scalar step).

**Our one addition, off by default** (``precondition=True``): gradient descent on a blur
is slow because ``AᵀA`` is ill-conditioned — a 25-pixel kernel needs hundreds of plain
steps, more than a small H can undo. With the option, H receives the *preconditioned*
gradient ``P ∇f`` with the Tikhonov preconditioner

    P = (KᵀK + λ DᵀD)⁻¹      (circular, on the scene grid, applied by FFT; λ learned)

so that one step with ``D = 1`` and no prior is already a Wiener-like solution and the
CNNs spend their capacity on the prior. ``P`` is symmetric positive definite, so ``−P ∇f``
stays a descent direction for the data term.

**A second addition, also off by default** (``prior="unet"``): the paper's R is a plain
stack of 3×3 convolutions, which sees ``1 + 2·depth`` pixels — 9 at depth 4, less than a
25-pixel blur, so it cannot tell the ringing of a long kernel from texture. With the option,
R is the residual branch ``U(x)`` of a small U-Net (:class:`deblur_edu.learned.UNet`,
``prior_levels`` halvings): for about the same arithmetic per pixel its bottom level sees a
window tens of pixels wide.
"""

from __future__ import annotations

import torch
from torch import nn

from ..classical.wiener import tikhonov_inverse
from ..physics import Blur, crop, pad
from ..checks import check_channels, check_model_dtype, check_problem
from .unet import UNet

#: the forms the learned prior R can take (see the module docstring)
PRIORS = ("cnn", "unet")


class UNetPrior(UNet):
    """The residual branch ``U(x)`` of a small U-Net, used as the prior term ``R(x)``.

    Example:
        >>> UNetPrior(1, width=8, levels=2)(torch.rand(1, 1, 30, 33)).shape
        torch.Size([1, 1, 30, 33])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x)


def dilations(depth: int, dilated: bool) -> list[int]:
    """Dilation of each of ``depth`` 3×3 convolutions: all 1, or 1, 2, 4, …, 4, 2, 1.

    Dilating the middle layers widens the receptive field (``1 + 2·Σ dilations`` pixels)
    at no extra cost: depth 5 sees 21 pixels instead of 11 — a prior needs context.
    """
    if not dilated:
        return [1] * depth
    half = [2 ** i for i in range((depth + 1) // 2)]
    return half + half[: depth // 2][::-1]


def receptive_field(net: nn.Module, size: int = 129) -> int:
    """Width in pixels of the window of input that reaches one output pixel, measured.

    Back-propagates from the centre pixel of ``net``'s output on a random ``size``×``size``
    image and counts the columns whose input gradient is non-zero. A plain stack of
    ``depth`` 3×3 convolutions sees ``1 + 2·depth`` pixels; each halving of a U-Net doubles
    what its deeper layers add.

    Example:
        >>> _ = torch.manual_seed(0)  # a dead ReLU path could hide a pixel: fix the weights
        >>> receptive_field(small_cnn(1, 4, 4))
        9
    """
    channels = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    net(x)[0, 0, size // 2, size // 2].backward()
    seen = (x.grad[0].abs().sum(0) > 0).nonzero()
    return int(seen[:, 1].max() - seen[:, 1].min()) + 1


def small_cnn(channels: int, features: int, depth: int, dilated: bool = False) -> nn.Sequential:
    """conv3×3 → ReLU → … → conv3×3, ``depth`` convolutions, ``channels`` in and out."""
    d = dilations(depth, dilated)
    widths = [channels] + [features] * (depth - 1) + [channels]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=d[i], dilation=d[i]))
        if i < depth - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class RGDN(nn.Module):
    """Recurrent gradient-descent network (see the module docstring for the equations).

    Args:
        channels: image channels (1 for gray, 3 for RGB).
        features: width of the three CNNs.
        depth: convolutions per CNN.
        steps: default number of update steps (training and testing may differ).
        use_h, use_r, use_d: ablation switches for the gradient adjuster, the prior and
            the scaler.
        precondition: feed H the preconditioned gradient ``(KᵀK + λDᵀD)⁻¹ ∇f`` (λ learned,
            initialised at ``balance``) instead of ``∇f``; see the module docstring.
        balance: initial λ of the preconditioner.
        dilated_prior: dilate the middle convolutions of R (a wider view for the prior).
        prior: ``"cnn"`` (the paper's plain stack) or ``"unet"`` (the residual branch of a
            U-Net of width ``features`` with ``prior_levels`` halvings; our addition).
        prior_levels: halvings of the U-Net prior.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> net = RGDN(features=8, depth=3, steps=2)
        >>> y = torch.rand(2, 1, 32, 32)
        >>> net(y, gaussian(7, 1.0)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, channels: int = 1, features: int = 32, depth: int = 4, steps: int = 10,
                 use_h: bool = True, use_r: bool = True, use_d: bool = True,
                 precondition: bool = False, balance: float = 1e-2, dilated_prior: bool = False,
                 prior: str = "cnn", prior_levels: int = 2):
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}.")
        if dilated_prior and prior != "cnn":
            raise ValueError("dilated_prior dilates the plain prior (prior='cnn'); the U-Net prior widens its "
                             "view by its halvings instead: set prior_levels, or drop dilated_prior.")
        self.channels, self.steps = channels, steps
        self.log_balance = nn.Parameter(torch.tensor(float(balance)).log()) if precondition else None
        self.H = small_cnn(channels, features, depth) if use_h else None
        if not use_r:
            self.R = None
        elif prior == "unet":
            self.R = UNetPrior(channels, width=features, levels=prior_levels)
        else:
            self.R = small_cnn(channels, features, depth, dilated_prior)
        self.D = small_cnn(channels, features, depth) if use_d else None
        # without the scaler D, a single learned step size (every parameter must be used: DDP)
        self.step_size = None if use_d else nn.Parameter(torch.tensor(1.0))

    @staticmethod
    def data_gradient(A: Blur, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∇f(x) = Aᵀ(A x − y)``; in float32 when x is half precision (mixed precision on a
        GPU), since the FFTs need it at arbitrary sizes."""
        low = x.dtype in (torch.float16, torch.bfloat16)
        xf, yf = (x.float(), y.float()) if low else (x, y.to(x.dtype))
        return A.adjoint(A(xf) - yf).to(x.dtype)

    def preconditioner(self, A: Blur, like: torch.Tensor):
        """``g ↦ (KᵀK + λDᵀD)⁻¹ g`` on the scene grid (circular; identity when disabled).

        Computed in float32 under mixed precision (FFTs of arbitrary size need it)."""
        if self.log_balance is None:
            return lambda g: g
        dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
        shape = like.shape[-2:]
        inverse = tikhonov_inverse(A.otf(shape, like.to(dtype)), self.log_balance.exp(), shape)
        return lambda g: inverse(g.to(dtype)).to(g.dtype)

    def update(self, x: torch.Tensor, grad_f: torch.Tensor) -> torch.Tensor:
        """One step ``x + D(H(∇f) − R(x))``."""
        g = grad_f if self.H is None else self.H(grad_f)
        if self.R is not None:
            g = g - self.R(x)
        return x + (self.step_size * -g if self.D is None else self.D(g))

    #: whether the model uses the noise level σ it is given (this one is blind to it: one prior,
    #: learned for the training range of σ)
    uses_sigma = False

    def forward(self, y: torch.Tensor, k: torch.Tensor, sigma: float | torch.Tensor | None = None,
                steps: int | None = None, return_all: bool = False, tol: float | None = None):
        """Deblur ``y`` (B, C, H, W) given kernels ``k`` (B or 1, 1, h, w).

        Args:
            sigma: the noise level of ``y``, accepted like every non-blind method's and ignored
                (``uses_sigma`` is False: RGDN learns one prior for its training range of σ).
            steps: number of updates (default ``self.steps``).
            return_all: return the list of every step's (cropped) estimate — what
                recursive supervision needs.
            tol: stop early once ``‖x_{t+1} − x_t‖ / ‖x_t‖ < tol`` (inference only).
        """
        y, k = check_problem(y, k)
        check_channels(y, self.channels, "RGDN")
        check_model_dtype(y, self, "RGDN")
        A = Blur(k, "valid", check_inputs=False)
        x = pad(y, A.pads, "replicate")
        precondition = self.preconditioner(A, x)
        outputs = []
        for _ in range(steps or self.steps):
            grad_f = precondition(self.data_gradient(A, x, y))
            x_new = self.update(x, grad_f)
            converged = tol is not None and float((x_new - x).detach().norm() / x.detach().norm().clamp(min=1e-12)) < tol
            x = x_new
            if return_all:
                outputs.append(crop(x, A.pads))
            if converged:
                break
        return outputs if return_all else crop(x, A.pads)
