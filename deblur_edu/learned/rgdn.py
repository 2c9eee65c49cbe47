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
output (recursive supervision), so each step must improve the estimate. The paper's network
never sees the noise level (with the denoiser prior below, ours does).

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

**A third option, the pretrained prior** (``prior="denoiser"``): RGDN's prior
learned from scratch in an hour of CPU never learns what natural images look like, and the
network loses to TV. With this option the prior term is a Gaussian denoiser's step,

    R(x) = D_θ(x, s(σ)) − x,      s(σ) = a·max(σ, σ_min) + b   (a, b learned; σ_min = NOISE_FLOOR)

— the gradient of Romano, Elad & Milanfar's *regularisation by denoising* (RED, SIAM J. Imaging
Sci. 2017), with minus sign: it points towards the denoised image — where ``D_θ`` is chapter 2's
pretrained U-Net denoiser (``denoiser_from`` in the preset copies it in) and is fine-tuned with the
rest. The network is then told σ (``uses_sigma``). Random H and D would hide the pretrained prior
behind noise at the start, so with this option both start as the identity and learn a correction,

    H(g) = g + h(g),      D(g) = −η g + d(g)     (h, d: the paper's small CNNs, last layer zero; η learned)

and before fine-tuning (the pretrained denoiser copied in) the network is the RED iteration: with η = ½ one
step is ``x ← ½ (x − P∇f(x)) + ½ D_θ(x, s)``, the average of a data step and a denoising step — a
Wiener-like data step with ``precondition=True`` (P = I otherwise). Told σ, the preconditioner's weight
becomes ``β = λ·max(σ, σ_min)``: noisier data need a more regularised data step.

**Where the prior acts** (``order``). The paper adds the prior term beside the data gradient
(``"parallel"``). In our pilots that order learned slowly on the denoiser prior: after a quarter of the
CPU budget it was still below TV on its own validation batch. With ``order="sequential"`` the data step
comes first and the prior acts on its result,

    u_t = x_t + D(H(P∇f(x_t))),      x_{t+1} = u_t + R(u_t)   (= D_θ(u_t, s) with the denoiser prior)

— plug-and-play's order (proximal gradient; half-quadratic splitting when ``P`` solves the data step),
which USRNet and DPIR unroll. Untrained, with η = 1, it is plug-and-play with a preconditioned gradient
as its data step and one level per σ.
Recursive supervision, the shared update unit and ``x_0 = y`` are the paper's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..classical.wiener import tikhonov_inverse
from ..physics import Blur, crop, pad
from ..checks import check_channels, check_model_dtype, check_problem
from .denoiser import NOISE_FLOOR, GaussianDenoiser, denoising_level, noise_per_image
from .unet import UNet

#: the forms the learned prior R can take (see the module docstring)
PRIORS = ("cnn", "unet", "denoiser")
#: where the prior acts in a step: beside the data gradient (the paper's) or after the data step (see the docstring)
ORDERS = ("parallel", "sequential")


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


class IdentityPlus(nn.Module):
    """``scale·g + net(g)`` with ``net``'s last convolution zeroed: the map starts as ``scale·g``
    and learns a correction (the ``denoiser`` prior's H and D). ``scale = −exp(log_step)`` when
    ``log_step`` is given (learned, a descent step), else 1.

    Example:
        >>> m = IdentityPlus(small_cnn(1, 4, 2))
        >>> g = torch.rand(1, 1, 5, 5)
        >>> torch.equal(m(g), g)
        True
    """

    def __init__(self, net: nn.Sequential, log_step: float | None = None):
        super().__init__()
        self.net = net
        last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.log_step = None if log_step is None else nn.Parameter(torch.tensor(float(log_step)))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if self.log_step is None else -self.log_step.exp()
        return scale * g + self.net(g)


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
        prior: ``"cnn"`` (the paper's plain stack), ``"unet"`` (the residual branch of a
            U-Net of width ``features`` with ``prior_levels`` halvings; our addition) or
            ``"denoiser"`` (RED's step towards a Gaussian denoiser of width ``prior_width``,
            ``prior_levels`` halvings and ``prior_blocks`` blocks, at level ``s = aσ + b``; H and D
            then start as the identity and a step ``−η``; see the module docstring).
        prior_levels: halvings of the U-Net prior or the denoiser.
        prior_width, prior_blocks: the denoiser's width (default ``features``) and blocks per stage.
        level_slope, level_floor: the denoiser prior's starting ``a`` and ``b``.
        step: the denoiser prior's starting step η.
        order: ``"parallel"`` (the paper's: the prior term beside the data gradient) or ``"sequential"``
            (the data step first, the prior at its result: with the denoiser prior, plug-and-play's order).

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
                 prior: str = "cnn", prior_levels: int = 2, prior_width: int | None = None, prior_blocks: int = 1,
                 level_slope: float = 2.0, level_floor: float = 0.01, step: float = 0.5, order: str = "parallel"):
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}.")
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; choose one of {ORDERS}.")
        self.order = order
        if prior == "denoiser" and not (use_h and use_r and use_d):
            raise ValueError("the denoiser prior starts H and D as the identity and a step: keep use_h, use_r and "
                             "use_d on (the ablations are for the 'cnn' and 'unet' priors).")
        if dilated_prior and prior != "cnn":
            raise ValueError("dilated_prior dilates the plain prior (prior='cnn'); the U-Net prior widens its "
                             "view by its halvings instead: set prior_levels, or drop dilated_prior.")
        self.channels, self.steps = channels, steps
        self.log_balance = nn.Parameter(torch.tensor(float(balance)).log()) if precondition else None
        self.H = small_cnn(channels, features, depth) if use_h else None
        self.R, self.denoiser = None, None
        if prior == "denoiser":
            # D is built before the denoiser (the initialisation order of the shipped run)
            self.D = small_cnn(channels, features, depth)
            self.use_denoiser_prior(GaussianDenoiser(channels, prior_width or features, prior_levels, prior_blocks),
                                    level_slope, level_floor, step)
        else:
            if use_r:
                self.R = (UNetPrior(channels, width=features, levels=prior_levels) if prior == "unet"
                          else small_cnn(channels, features, depth, dilated_prior))
            self.D = small_cnn(channels, features, depth) if use_d else None
        # without the scaler D, a single learned step size (every parameter must be used: DDP)
        self.step_size = None if use_d else nn.Parameter(torch.tensor(1.0))

    def use_denoiser_prior(self, denoiser: GaussianDenoiser, level_slope: float, level_floor: float,
                           step: float) -> None:
        """Make ``R(x) = D_θ(x, aσ + b) − x`` with ``denoiser`` as ``D_θ``, and wrap H and D so they start as
        the identity and the step ``−η`` (:class:`IdentityPlus`); ``a``, ``b``, ``η`` learned from the given values."""
        for name, value in (("level_slope", level_slope), ("level_floor", level_floor), ("step", step)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}.")
        self.denoiser = denoiser
        self.log_level_slope = nn.Parameter(torch.tensor(math.log(level_slope)))
        self.log_level_floor = nn.Parameter(torch.tensor(math.log(level_floor)))
        self.H = IdentityPlus(self.H)
        self.D = IdentityPlus(self.D, log_step=math.log(step))

    @staticmethod
    def data_gradient(A: Blur, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∇f(x) = Aᵀ(A x − y)``; in float32 when x is half precision (mixed precision on a
        GPU), since the FFTs need it at arbitrary sizes."""
        low = x.dtype in (torch.float16, torch.bfloat16)
        xf, yf = (x.float(), y.float()) if low else (x, y.to(x.dtype))
        return A.adjoint(A(xf) - yf).to(x.dtype)

    def preconditioner(self, A: Blur, like: torch.Tensor, sigma: torch.Tensor | None = None):
        """``g ↦ (KᵀK + βDᵀD)⁻¹ g`` on the scene grid (circular; identity when disabled), ``β = λ``
        learned; with the denoiser prior, which is told σ, ``β = λ·max(σ, σ_min)`` per image: noisier
        data need a more regularised data step (``sigma``: (B, 1, 1, 1)).

        Computed in float32 under mixed precision (FFTs of arbitrary size need it)."""
        if self.log_balance is None:
            return lambda g: g
        dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
        shape = like.shape[-2:]
        balance = self.log_balance.exp()
        if sigma is not None:
            balance = balance * sigma.clamp(min=NOISE_FLOOR).to(dtype)
        inverse = tikhonov_inverse(A.otf(shape, like.to(dtype)), balance, shape)
        return lambda g: inverse(g.to(dtype)).to(g.dtype)

    def prior_term(self, x: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor | None:
        """``R(x)``: the learned prior's network, or for the denoiser prior ``D_θ(x, s) − x`` at the
        level ``s`` (B, 1, 1, 1); None without a prior."""
        if self.denoiser is not None:
            if level is None:
                raise ValueError("the denoiser prior needs its level s(σ): pass level=self.level(self.noise_level(sigma, y)).")
            return self.denoiser.denoise(x, level.expand(-1, 1, *x.shape[-2:])) - x
        return None if self.R is None else self.R(x)

    def update(self, x: torch.Tensor, grad_f: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``x + D(H(∇f) − R(x))`` (order ``"parallel"``, the paper's), or the data step first and
        the prior at its result, ``u = x + D(H(∇f))``, then ``u + R(u)`` (order ``"sequential"``; with the
        denoiser prior ``D_θ(u, s)``). ``level``: the denoiser prior's ``s(σ)``."""
        g = grad_f if self.H is None else self.H(grad_f)
        if self.order == "sequential":
            u = x + self.scale(g)
            r = self.prior_term(u, level)
            return u if r is None else u + r
        r = self.prior_term(x, level)
        if r is not None:
            g = g - r
        return x + self.scale(g)

    def scale(self, g: torch.Tensor) -> torch.Tensor:
        """``D(g)``, the learned scaler (or, without it, the learned scalar step ``−η g``)."""
        return self.step_size * -g if self.D is None else self.D(g)

    @property
    def uses_sigma(self) -> bool:
        """Whether the model uses the noise level σ it is given: only the denoiser prior does (the
        others learn one prior for the training range of σ)."""
        return self.denoiser is not None

    def noise_level(self, sigma: float | torch.Tensor | None, y: torch.Tensor) -> torch.Tensor | None:
        """σ per image, (B, 1, 1, 1), for the denoiser prior (None for the other priors, which ignore it);
        the denoiser prior needs σ: a clear error without it."""
        if self.denoiser is None:
            return None
        return noise_per_image(sigma, y, "RGDN (prior 'denoiser')")

    def level(self, sigma: torch.Tensor) -> torch.Tensor:
        """The denoiser prior's level ``s(σ) = a·max(σ, σ_min) + b`` (``sigma`` and result: (B, 1, 1, 1))."""
        return denoising_level(sigma, self.log_level_slope, self.log_level_floor)

    def forward(self, y: torch.Tensor, k: torch.Tensor, sigma: float | torch.Tensor | None = None,
                steps: int | None = None, return_all: bool = False, tol: float | None = None):
        """Deblur ``y`` (B, C, H, W) given kernels ``k`` (B or 1, 1, h, w).

        Args:
            sigma: the noise level of ``y`` (a number or one per image): the denoiser prior's level
                ``s(σ)`` reads it; the other priors accept and ignore it (``uses_sigma`` is False: one
                prior learned for the training range of σ).
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
        sigma = self.noise_level(sigma, y)
        precondition = self.preconditioner(A, x, sigma)
        s = None if sigma is None else self.level(sigma)
        outputs = []
        for _ in range(steps or self.steps):
            grad_f = precondition(self.data_gradient(A, x, y))
            x_new = self.update(x, grad_f, s)
            converged = tol is not None and float((x_new - x).detach().norm() / x.detach().norm().clamp(min=1e-12)) < tol
            x = x_new
            if return_all:
                outputs.append(crop(x, A.pads))
            if converged:
                break
        return outputs if return_all else crop(x, A.pads)
