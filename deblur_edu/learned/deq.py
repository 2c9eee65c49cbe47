r"""Deep-equilibrium (implicit) networks for deblurring, and the ways to train them.

Gilton, Ongie & Willett, "Deep equilibrium architectures for inverse problems in imaging"
(IEEE TCI 2021); Fung, Heaton, Li, McKenzie, Osher & Yin, "JFB: Jacobian-free
backpropagation for implicit networks" (AAAI 2022); Liu, Tong & Zhao, "Training implicit
networks for image deblurring using Jacobian-free backpropagation" (2024).

Instead of a fixed number of steps (RGDN), the output is an *equilibrium* of one map,

    gradient form:  T(x) = x − η P (Aᵀ(A x − y) + β DᵀD x + λ R_θ(x)),  R_θ(x) = x − D_θ(x)
    proximal form:  T(x) = D_θ(x − η P Aᵀ(A x − y))
    hqs form:       T(z) = D_θ(x(z), s(σ)),  x(z) = argmin_x ‖A x − y‖² + α(σ) ‖x − z‖²

found by a fixed-point solver (:mod:`deblur_edu.learned.fixed_point`) *without* recording a graph,
and the network returns ``T(x*)``. ``A`` is the border-aware ``valid`` blur, so ``x`` lives on
the scene. ``D_θ`` is a "denoiser": a CNN with spectral normalisation and no BatchNorm
(BatchNorm made the implicit solves diverge in Gilton et al.), scaled by ``lipschitz`` L < 1.
The gradient-form prior ``R_θ = I − D_θ`` is "regularisation by denoising" (Romano, Elad &
Milanfar 2017), weighted by a learned strength λ (``strength`` is its initial value), next to a
fixed Tikhonov term ``β DᵀD x`` (``D`` the finite differences, β = ``balance``): with a small
initial λ the untrained equilibrium is the border-aware Tikhonov solution, and training
learns what to add to it.

``P`` is the identity, or with ``precondition=True`` the Tikhonov preconditioner
``P = (KᵀK + βDᵀD + λI)⁻¹`` (β = ``balance``; without λ in the proximal form; circular, by
FFT on the scene grid; RGDN's option in chapter 3): the inverse of the map's linear part
when ``D_θ = 0``. A blur's ``AᵀA`` is ill-conditioned, so plain data steps crawl; with ``P``
and η = 1 the gradient form's Tikhonov part is solved in one step (up to the border).
The proximal form becomes "Wiener-like step, then denoise", repeated to equilibrium (a
learned half-quadratic splitting). ``P`` changes how fast a solver converges, not where:
the gradient form's equilibrium solves ``F(x) = 0`` whatever η and P are.

Why these shapes converge. ``‖A‖ ≤ 1`` for a kernel summing to 1, so with ``P = I`` the
proximal form is an L-contraction for any ``η ≤ 2``, and for the gradient form
``F(x) = Aᵀ(A x − y) + β DᵀD x + λ(x − D_θ(x))`` is strongly monotone,
``⟨F(x) − F(z), x − z⟩ ≥ λ(1 − L)‖x − z‖²``: one equilibrium, reached for small η.
Spectral normalisation bounds each layer's weight matrix, not the conv operator's exact
gain, and ``P`` changes the geometry, so :func:`~deblur_edu.learned.fixed_point.lipschitz_estimate`
measures the contraction factor, and the solvers report divergence with their trace.
The solve starts from the replicate-padded observation corrected by one Tikhonov step,
``x₀ = ȳ − P₀ Aᵀ(A ȳ − y)`` with ``P₀ = (KᵀK + βDᵀD)⁻¹`` (whether or not ``precondition`` is
set): sharp where the scene is observed, the padding where it is not.

**The hqs form** is plug-and-play's half-quadratic splitting (:mod:`deblur_edu.learned.pnp`)
run to its fixed point at *one* denoising level instead of a decreasing schedule, with the
pretrained noise-level-conditioned denoiser of chapter 2 (:class:`~deblur_edu.learned.GaussianDenoiser`)
as ``D_θ`` — how Gilton et al. build theirs: pretrain the denoiser, then fine-tune the whole
equilibrium map end to end. It is told the noise level σ of ``y`` (``forward(y, k, sigma)``):
the denoising level is ``s(σ) = a σ + b`` and the data weight ``α(σ) = λ σ² / s²`` (σ floored at
:data:`~deblur_edu.learned.denoiser.NOISE_FLOOR`), with ``a``, ``b`` and λ learned (``level_slope``,
``level_floor``, ``strength`` are their initial values). The data step is solved by
``cg_iterations`` of preconditioned conjugate gradients started from ``z`` (a fixed count, so
``x(z)`` is one differentiable function of ``z``). The denoiser has no Lipschitz bound by
construction: whether ``T`` contracts is measured
(:func:`~deblur_edu.learned.fixed_point.lipschitz_estimate`, a lower bound on its Lipschitz
constant at one point — evidence, not a proof), and the solver's cap hits are counted.

**Backward modes** (``backward=``) — how ``∂ℓ/∂θ`` is obtained from ``g = ∂ℓ/∂T(x*)``.
By the implicit function theorem, with ``J = ∂T/∂x`` at ``x*``,

    ∂ℓ/∂θ = uᵀ ∂T/∂θ,   u = (I − Jᵀ)⁻¹ g,   i.e.  u = g + Jᵀu.

- ``implicit-anderson``: solve ``u = g + Jᵀu`` with Anderson (vector–Jacobian products).
- ``implicit-cg``: conjugate gradients on the normal equations
  ``(I − J)(I − Jᵀ) u = (I − J) g`` (needs Jacobian–vector products too; Fung et al.).
- ``neumann-K`` (e.g. ``neumann-3``): the truncated series ``u ≈ Σ_{i=0}^{K} (Jᵀ)ⁱ g``.
- ``jfb``: ``u = g`` — backprop through the single last application of ``T`` only
  (Jacobian-free; a descent direction when ``T`` is contractive, Fung et al. Thm 0.2).
- ``unrolled``: ``unroll_steps`` plain iterations from ``x₀``, backprop through all of them
  (memory grows with the steps — the thing DEQs avoid).

The implicit modes replace the incoming gradient by ``u`` (a hook on ``T(x*)``); they do
*not* add it to the JFB gradient. The adjoint solve uses the forward solve's tolerance
and iteration cap; its diagnostics land in ``self.backward_info``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..classical.priors import grad, grad_adjoint
from ..classical.wiener import tikhonov_inverse, tikhonov_start
from .denoiser import NOISE_FLOOR, GaussianDenoiser, denoising_level, noise_per_image
from .fixed_point import SOLVERS, FixedPointError, SolverInfo, anderson, preconditioned_cg
from ..physics import Blur, crop, irfft2, rfft2
from ..checks import check_channels, check_model_dtype, check_problem

FORMS = ("gradient", "proximal", "hqs")
BACKWARDS = ("jfb", "implicit-anderson", "implicit-cg", "unrolled", "neumann-K")


class Denoiser(nn.Module):
    """A CNN ``cnn`` (conv3×3 → ReLU → … → conv3×3, each convolution spectrally normalised,
    no BatchNorm) used as a denoiser in one of two ways:

    - ``residual=False``: ``D_θ(x) = L · cnn(x)`` — L-Lipschitz by construction (L < 1);
    - ``residual=True``: ``D_θ(x) = x − L · cnn(x)`` — the CNN predicts what to remove, the
      easy way to learn a denoiser (DnCNN); only ``(1 + L)``-Lipschitz by construction, so
      contraction is measured (:func:`~deblur_edu.learned.fixed_point.lipschitz_estimate`), not given.
    """

    def __init__(self, channels: int, features: int, depth: int, lipschitz: float, residual: bool = False):
        super().__init__()
        widths = [channels] + [features] * (depth - 1) + [channels]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1)))
            if i < depth - 1:
                layers.append(nn.ReLU())
        self.cnn = nn.Sequential(*layers)
        self.lipschitz, self.residual = lipschitz, residual

    def cache_weights(self) -> None:
        """Inside ``parametrize.cached()``: normalise every weight now, with its graph, so
        that the no-grad fixed-point solve and the differentiable step share them."""
        for layer in self.cnn:
            if parametrize.is_parametrized(layer):
                layer.weight  # noqa: B018 — the access fills the cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lipschitz * self.cnn(x)
        return x - out if self.residual else out


def parse_backward(backward: str) -> tuple[str, int]:
    """``"neumann-3"`` → ``("neumann", 3)``; other modes → ``(mode, 0)``; clear error otherwise."""
    if backward.startswith("neumann-") and backward[len("neumann-"):].isdigit():
        return "neumann", int(backward[len("neumann-"):])
    if backward in ("jfb", "implicit-anderson", "implicit-cg", "unrolled"):
        return backward, 0
    raise ValueError(f"unknown backward mode {backward!r}; choose one of {BACKWARDS} (K a number, e.g. neumann-3).")


def conjugate_gradient(apply, b: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, SolverInfo]:
    """Solve ``M u = b`` for symmetric positive (semi-)definite ``M`` given as ``apply``,
    batched over the first axis; stops on the relative residual ``‖b − M u‖ / ‖b‖``."""
    info = SolverInfo("cg")
    dims = tuple(range(1, b.dim()))
    u = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = (r * r).sum(dims, keepdim=True)
    b_norm = rr.sqrt().clamp(min=1e-30)
    for _ in range(max_iter):
        Mp = apply(p)
        a = rr / (p * Mp).sum(dims, keepdim=True).clamp(min=1e-30)
        u, r = u + a * p, r - a * Mp
        rr_new = (r * r).sum(dims, keepdim=True)
        info.iterations += 1
        info.residuals.append(float((rr_new.sqrt() / b_norm).max()))
        if not torch.isfinite(u).all():
            raise FixedPointError("cg: the adjoint solve became NaN/Inf.", info)
        if info.residual < tol:
            info.converged = True
            break
        p, rr = r + rr_new / rr.clamp(min=1e-30) * p, rr_new
    return u, info


class DEQ(nn.Module):
    """Deep-equilibrium deblurring network (see the module docstring for the equations).

    Args:
        channels, features, depth: the denoiser CNN ``D_θ`` (gradient and proximal forms).
        width, levels, blocks: the hqs form's denoiser, a :class:`~deblur_edu.learned.GaussianDenoiser`.
        lipschitz: the scale L of ``D_θ`` (< 1 for a contraction; see the module docstring).
        form: ``"gradient"``, ``"proximal"`` or ``"hqs"`` (see the module docstring).
        step_size: η of the data step.
        backward: ``jfb``, ``implicit-anderson``, ``implicit-cg``, ``unrolled`` or ``neumann-K``.
        solver: forward solver, ``anderson`` (default), ``picard`` or ``krasnoselskii-mann``.
        tol, max_iter: forward tolerance (relative residual) and iteration cap; the
            adjoint solve uses the same (in training mode: ``train_max_iter``).
        train_max_iter: the forward and adjoint solves' iteration budget in training mode (default
            ``max_iter``), as torchdeq separates training and evaluation budgets: a training step
            needs an approximate equilibrium, evaluation a converged one. Stopping there in
            training is the budget, not a failure: it does not warn (``strict`` still raises).
        unroll_steps: iterations of the ``unrolled`` mode.
        residual: a residual denoiser ``D_θ(x) = x − L·cnn(x)`` (see :class:`Denoiser`).
        strength: initial value of the learned prior weight λ (gradient and hqs forms).
        level_slope, level_floor: initial ``a`` and ``b`` of the hqs form's level ``s(σ) = a σ + b``.
        cg_iterations: the hqs form's conjugate-gradient iterations per data step.
        precondition: precondition the step by ``P`` (see the module docstring).
        balance: β of ``P`` and of the Tikhonov start.
        strict: raise (instead of warn) when a solve does not reach ``tol``. NaN/Inf and
            divergence always raise.

    It computes in float32 even under autocast (mixed precision): the solves' tolerance is
    near float16's resolution. The gradient and proximal forms are not told σ (``forward``
    accepts it and ignores it: they learned one prior for the training range of σ); the hqs
    form needs it.

    Example:
        >>> from deblur_edu.kernels import gaussian
        >>> net = DEQ(features=8, depth=3, max_iter=10)
        >>> y = torch.rand(2, 1, 32, 32)
        >>> net(y, gaussian(7, 1.0)).shape
        torch.Size([2, 1, 32, 32])
        >>> net.forward_info.iterations <= 10
        True
    """

    def __init__(self, channels: int = 1, features: int = 32, depth: int = 5, form: str = "gradient",
                 step_size: float = 1.0, backward: str = "jfb", solver: str = "anderson", tol: float = 1e-3,
                 max_iter: int = 50, unroll_steps: int = 10, balance: float = 1e-2, strict: bool = False,
                 lipschitz: float = 0.99, strength: float = 1.0, precondition: bool = False,
                 residual: bool = False, width: int = 32, levels: int = 3, blocks: int = 1,
                 level_slope: float = 1.75, level_floor: float = 0.0225, cg_iterations: int = 10,
                 train_max_iter: int | None = None):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose one of {FORMS}.")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}.")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}.")
        if not strength > 0:
            raise ValueError(f"strength must be > 0, got {strength}.")
        if form == "hqs" and not (level_slope > 0 and level_floor > 0):
            raise ValueError(f"level_slope and level_floor must be > 0, got {level_slope} and {level_floor}.")
        for name, value in (("cg_iterations", cg_iterations), ("max_iter", max_iter), ("train_max_iter", train_max_iter)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        parse_backward(backward)
        self.channels, self.form, self.step_size = channels, form, step_size
        self.backward, self.solver, self.tol, self.max_iter = backward, solver, tol, max_iter
        self.unroll_steps, self.balance, self.strict = unroll_steps, balance, strict
        self.precondition, self.cg_iterations = precondition, cg_iterations
        self.train_max_iter = max_iter if train_max_iter is None else train_max_iter
        if form == "hqs":  # the pretrained-denoiser equilibrium (DDP wants every parameter used)
            self.denoiser = GaussianDenoiser(channels, width, levels, blocks)
            self.log_level_slope = nn.Parameter(torch.tensor(float(level_slope)).log())
            self.log_level_floor = nn.Parameter(torch.tensor(float(level_floor)).log())
        else:
            self.denoiser = Denoiser(channels, features, depth, lipschitz, residual)
        # λ belongs to the gradient and hqs forms only
        self.log_strength = nn.Parameter(torch.tensor(float(strength)).log()) if form != "proximal" else None
        self.forward_info: SolverInfo | None = None
        self.backward_info: SolverInfo | None = None

    # ----- the map T -------------------------------------------------------------------
    def T(self, x: torch.Tensor, A: Blur, y: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """One application of the fixed-point map; ``sigma`` (B, 1, 1, 1) is the hqs form's noise level."""
        if self.form == "hqs":
            return self.hqs_map(x, A, y, sigma)
        P = self.preconditioner(A, x) if self.precondition else (lambda g: g)
        data_grad = A.adjoint(A(x) - y)
        if self.form == "proximal":
            return self.denoiser(x - self.step_size * P(data_grad))
        strength = self.log_strength.exp()
        prior_grad = self.balance * grad_adjoint(grad(x)) + strength * (x - self.denoiser(x))
        return x - self.step_size * P(data_grad + prior_grad)

    def level_and_weight(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hqs form's denoising level ``s = a σ + b`` and data weight ``α = λ σ² / s²``
        (σ floored at ``NOISE_FLOOR``; :func:`~deblur_edu.learned.denoiser.denoising_level`), each shaped like ``sigma``."""
        s = denoising_level(sigma, self.log_level_slope, self.log_level_floor)
        return s, self.log_strength.exp() * sigma.clamp(min=NOISE_FLOOR) ** 2 / s**2

    def hqs_map(self, z: torch.Tensor, A: Blur, y: torch.Tensor, sigma: float | torch.Tensor | None) -> torch.Tensor:
        """``T(z) = D_θ(x(z), s)``, ``x(z)`` = the data step ``(AᵀA + αI) x = Aᵀy + α z`` by
        ``cg_iterations`` of conjugate gradients from ``z``, preconditioned by ``(|K|² + α)⁻¹``.
        ``sigma``: (B, 1, 1, 1) as :meth:`noise_level` makes it (a number is converted, with its checks)."""
        if not (torch.is_tensor(sigma) and sigma.dim() == 4):
            sigma = self.noise_level(sigma, y)
        s, alpha = self.level_and_weight(sigma)
        shape = z.shape[-2:]
        K2 = A.otf(shape, z).abs() ** 2
        x = preconditioned_cg(lambda v: A.adjoint(A(v)) + alpha * v, A.adjoint(y) + alpha * z, z,
                              lambda r: irfft2(rfft2(r) / (K2 + alpha), shape, z.dtype), self.cg_iterations)
        return self.denoiser.denoise(x, s.expand(-1, 1, *shape))

    def preconditioner(self, A: Blur, like: torch.Tensor):
        """``P: g ↦ (KᵀK + βDᵀD + λI)⁻¹ g`` on the scene grid (circular, by FFT); the
        proximal form, which has no λ, uses ``(KᵀK + βDᵀD)⁻¹``."""
        shape = like.shape[-2:]
        strength = self.log_strength.exp() if self.form == "gradient" else 0.0
        return tikhonov_inverse(A.otf(shape, like), self.balance, shape, identity=strength)

    def initial(self, A: Blur, y: torch.Tensor) -> torch.Tensor:
        """``x₀ = ȳ − P₀ Aᵀ(A ȳ − y)``, ``P₀ = (KᵀK + βDᵀD)⁻¹``, ``ȳ`` = ``y`` replicate-padded
        to the scene (:func:`~deblur_edu.classical.tikhonov_start`)."""
        return tikhonov_start(A, y, self.balance)

    # ----- solves ----------------------------------------------------------------------
    def _check_solve(self, info: SolverInfo, what: str) -> None:
        if info.converged:
            return
        message = (f"DEQ {what} solve: no convergence to tol={self.tol:g} in {info.iterations} iterations "
                   f"(relative residual {info.residual:.2e}); raise max_iter, loosen tol, or check that T contracts "
                   f"(deblur_edu.learned.fixed_point.lipschitz_estimate).")
        if self.strict:
            raise FixedPointError(message, info)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def solve(self, A: Blur, y: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """``x*`` with ``x* = T(x*)``, no graph recorded; diagnostics in ``forward_info``."""
        with torch.no_grad():
            x, info = SOLVERS[self.solver](lambda x: self.T(x, A, y, sigma), self.initial(A, y), tol=self.tol,
                                           max_iter=self.budget())
        self.forward_info = info
        if self.strict or not self.budgeted():
            self._check_solve(info, "forward")
        return x

    def budgeted(self) -> bool:
        """Whether the solves run to the training budget ``train_max_iter`` (training mode, a budget of
        its own): stopping there is expected and does not warn."""
        return self.training and self.train_max_iter != self.max_iter

    def budget(self) -> int:
        """The iteration cap of this call's forward and adjoint solves."""
        return self.train_max_iter if self.training else self.max_iter

    def _adjoint_solver(self, mode: str, terms: int, fx0: torch.Tensor, x0: torch.Tensor, cap: int, quiet: bool):
        """The map ``g ↦ u ≈ (I − Jᵀ)⁻¹ g`` for the hook, J = ∂T/∂x at x* (through fx0 = T(x0));
        ``cap`` and ``quiet``: the iteration cap and the no-warning budget of the forward call that made it."""

        def vjp(v: torch.Tensor) -> torch.Tensor:  # Jᵀ v
            return torch.autograd.grad(fx0, x0, v, retain_graph=True)[0]

        def jvp(v: torch.Tensor) -> torch.Tensor:  # J v, by the double-vjp trick
            w = torch.zeros_like(fx0, requires_grad=True)
            Jt_w = torch.autograd.grad(fx0, x0, w, create_graph=True)[0]
            return torch.autograd.grad(Jt_w, w, v)[0]

        def solve(g: torch.Tensor) -> torch.Tensor:
            if mode == "neumann":
                u, v = g, g
                for _ in range(terms):
                    v = vjp(v)
                    u = u + v
                self.backward_info = SolverInfo("neumann", iterations=terms, converged=True)
                return u
            if mode == "implicit-anderson":
                with torch.enable_grad():
                    u, info = anderson(lambda u: g + vjp(u), g, tol=self.tol, max_iter=cap)
            else:  # implicit-cg on the normal equations (I − J)(I − Jᵀ) u = (I − J) g

                def normal_operator(v: torch.Tensor) -> torch.Tensor:
                    w = v - vjp(v)  # (I − Jᵀ) v
                    return w - jvp(w)  # (I − J) w

                with torch.enable_grad():
                    u, info = conjugate_gradient(normal_operator, g - jvp(g), self.tol, cap)
            self.backward_info = info
            if self.strict or not quiet:
                self._check_solve(info, "backward (adjoint)")
            return u

        return solve

    # ----- forward ---------------------------------------------------------------------
    @property
    def uses_sigma(self) -> bool:
        """Whether the model uses the noise level σ it is given: the hqs form only."""
        return self.form == "hqs"

    def noise_level(self, sigma: float | torch.Tensor | None, y: torch.Tensor) -> torch.Tensor | None:
        """σ as (B, 1, 1, 1) on ``y``'s device for the hqs form (None for the others, which ignore it);
        a clear error when the hqs form is not given it."""
        if self.form != "hqs":
            return None
        return noise_per_image(sigma, y, "DEQ (form 'hqs')")

    def forward(self, y: torch.Tensor, k: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (B, C, H, W) given kernels ``k`` (B or 1, 1, h, w) and, for the hqs form, the
        noise level ``sigma`` (a number or one per image; the other forms ignore it)."""
        y, k = check_problem(y, k)
        check_channels(y, self.channels, "DEQ")
        check_model_dtype(y, self, "DEQ")
        sigma = self.noise_level(sigma, y)
        A = Blur(k, "valid", check_inputs=False)
        mode, terms = parse_backward(self.backward)
        # no autocast: the solves stop on a relative residual of ~1e-3, float16's resolution (2⁻¹⁰)
        with parametrize.cached(), torch.autocast(y.device.type, enabled=False):
            # normalise each weight once per call: T stays one fixed map
            if isinstance(self.denoiser, Denoiser):
                self.denoiser.cache_weights()
            if mode == "unrolled":
                x = self.initial(A, y)
                for _ in range(self.unroll_steps):
                    x = self.T(x, A, y, sigma)
                return crop(x, A.pads)
            x_star = self.solve(A, y, sigma)
            out = self.T(x_star, A, y, sigma)  # one differentiable application (all that JFB uses)
            if mode != "jfb" and out.requires_grad:
                x0 = x_star.clone().requires_grad_()
                fx0 = self.T(x0, A, y, sigma)  # a second graph at x*, for the Jacobian products
                solve = self._adjoint_solver(mode, terms, fx0, x0, self.budget(), self.budgeted())
                out.register_hook(solve)
        return crop(out, A.pads)
