r"""Fixed-point solvers: find ``x* = T(x*)``, and know when that fails.

A deep-equilibrium network (chapter 4) defines its output as a fixed point of a map ``T``.
Banach's theorem: if ``T`` is a contraction, ``‖T(a) − T(b)‖ ≤ L‖a − b‖`` with ``L < 1``, the
fixed point is unique and the iteration ``x ← T(x)`` reaches it, the error shrinking like
``Lᵗ``. Three solvers, one interface ``solver(T, x0, tol, max_iter) → (x, SolverInfo)``:

- :func:`picard`: ``x ← T(x)``.
- :func:`krasnoselskii_mann` (KM): ``x ← (1 − β)x + β T(x)``, which also converges for maps
  that are only non-expansive (``L = 1``), where plain iteration can cycle.
- :func:`anderson`: Anderson acceleration (Anderson 1965; Walker & Ni 2011). It keeps the
  last ``m`` iterates and residuals ``gᵢ = T(xᵢ) − xᵢ`` and extrapolates with the affine
  combination of them whose residual is smallest:

      α = argmin_α ‖Σᵢ αᵢ gᵢ‖²  subject to  Σᵢ αᵢ = 1,
      x ← β Σᵢ αᵢ T(xᵢ) + (1 − β) Σᵢ αᵢ xᵢ .

Every solver stops when the relative residual ``‖T(x) − x‖ / ‖T(x)‖`` of *every* image in
the batch is below ``tol``, records the residual history, and raises
:class:`FixedPointError` with that history when the iterates turn non-finite or the
residual grows far beyond its best value (a map that is not contractive), and, with
``strict=True``, when ``max_iter`` is reached first. :func:`lipschitz_estimate` measures
the contraction factor of ``T`` at a point by power iteration on its Jacobian.

**Checking without waiting.** Reading a residual back to the host makes a GPU finish its queue
first: checking after every iteration leaves it idle between iterations. So the residuals stay on
the device and are read back together every ``check_every`` iterations (default: every iteration
on the CPU, where reading costs nothing, every ``CUDA_CHECK_EVERY`` on a GPU). The iterate of each
unchecked iteration is kept, so the result, the iteration count and the errors are exactly those
of checking every iteration; at most ``check_every − 1`` iterations are computed for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

FixedPointMap = Callable[[torch.Tensor], torch.Tensor]


class FixedPointError(RuntimeError):
    """A fixed-point solve failed; ``.info`` holds the residual trace."""

    def __init__(self, message: str, info: "SolverInfo"):
        trace = ", ".join(f"{r:.2e}" for r in info.residuals[-8:])
        super().__init__(f"{message} Last relative residuals: [{trace}].")
        self.info = info


@dataclass
class SolverInfo:
    """What a solve did: iterations, the batch-max relative residual after each, success."""

    solver: str
    iterations: int = 0
    residuals: list[float] = field(default_factory=list)
    converged: bool = False
    first_step: float = float("nan")  # max ‖T(x) − x‖ at the start, and its smallest value so far
    smallest_step: float = float("inf")  # (the divergence check compares against both)

    @property
    def residual(self) -> float:
        return self.residuals[-1] if self.residuals else float("inf")


def relative_residual(fx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖T(x) − x‖ / ‖T(x)‖`` (the first axis is the batch)."""
    diff = (fx - x).flatten(1).pow(2).sum(1).sqrt()
    return diff / fx.flatten(1).pow(2).sum(1).sqrt().clamp(min=1e-12)


#: a residual this many times above the best one seen means the map is not contracting
DIVERGENCE_FACTOR = 1e3
#: on a GPU, the residuals are read back to the host once every this many iterations
CUDA_CHECK_EVERY = 5


def _check_progress(info: SolverInfo, residual: float, step: float, finite: bool) -> None:
    """Record one iteration's batch-max relative residual; raise on NaN/Inf, or when the step
    ``‖T(x) − x‖`` has grown far beyond the smallest seen *and* beyond the first (the iterates
    run away: not a contraction — a bounce near convergence does not count)."""
    info.iterations += 1
    info.residuals.append(residual)
    if not finite or step != step:
        raise FixedPointError(
            f"{info.solver}: the iterates became NaN/Inf after {info.iterations} iterations — the map "
            f"is not contractive here (check its step size η or the network's Lipschitz constant).", info)
    if info.iterations == 1:
        info.first_step = step
    if step > DIVERGENCE_FACTOR * info.smallest_step and step > info.first_step:
        raise FixedPointError(
            f"{info.solver}: diverging — the step ‖T(x) − x‖ grew from {info.smallest_step:.2e} to {step:.2e}; "
            f"the map is not a contraction (reduce η, use spectral normalisation, or damp with "
            f"krasnoselskii_mann).", info)
    info.smallest_step = min(info.smallest_step, step)


class Monitor:
    """Each iteration's residual, step and finiteness, kept on the device and read back to the host
    every ``check_every`` iterations in one transfer (see the module docstring).

    ``record(fx, x, out)`` notes the iteration ``x → fx`` whose result is ``out``; it returns the
    result of the first iteration below ``tol`` once a check has seen it, else None. ``flush()``
    checks what is pending: at the end of the iterations, and before an error of the map itself
    propagates (an iterate gone NaN is then reported as such, at its iteration, as when checking
    every iteration)."""

    def __init__(self, info: SolverInfo, tol: float, check_every: int | None, device: torch.device):
        if check_every is None:
            check_every = 1 if device.type == "cpu" else CUDA_CHECK_EVERY
        if not (isinstance(check_every, int) and check_every >= 1):
            raise ValueError(f"check_every must be a positive integer, got {check_every!r}.")
        self.info, self.tol, self.check_every = info, tol, check_every
        self.values: list[torch.Tensor] = []
        self.outs: list[torch.Tensor] = []

    def record(self, fx: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor | None:
        step = (fx - x).flatten(1).pow(2).sum(1).sqrt().max()
        finite = torch.isfinite(fx).all().to(step.dtype)
        self.values.append(torch.stack([relative_residual(fx, x).max(), step, finite]))
        self.outs.append(out)
        return self.flush() if len(self.values) == self.check_every else None

    def flush(self) -> torch.Tensor | None:
        if not self.values:
            return None
        rows = torch.stack(self.values).tolist()  # the one read-back
        outs = self.outs
        self.values, self.outs = [], []
        for (residual, step, finite), out in zip(rows, outs):
            _check_progress(self.info, residual, step, bool(finite))
            if residual < self.tol:
                self.info.converged = True
                return out
        return None

    def apply(self, T: FixedPointMap, x: torch.Tensor) -> torch.Tensor:
        """``T(x)``; if ``T`` raises, the pending iterations are checked first (see above)."""
        try:
            return T(x)
        except Exception:
            self.flush()
            raise


def _finish(info: SolverInfo, tol: float, strict: bool) -> None:
    if not info.converged and strict:
        raise FixedPointError(
            f"{info.solver}: no convergence to tol={tol:g} in {info.iterations} iterations (residual "
            f"{info.residual:.2e}); raise max_iter, loosen tol, or make the map more contractive.", info)


def _check_args(tol: float, max_iter: int) -> None:
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}.")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")


@torch.no_grad()
def krasnoselskii_mann(T: FixedPointMap, x0: torch.Tensor, tol: float = 1e-3, max_iter: int = 50,
                       beta: float = 0.5, strict: bool = False,
                       check_every: int | None = None) -> tuple[torch.Tensor, SolverInfo]:
    """Averaged iteration ``x ← (1 − β) x + β T(x)`` (``β = 1``: Picard). ``check_every``: see the
    module docstring.

    Example:
        >>> T = lambda x: 0.5 * x + 1.0          # contraction, fixed point 2
        >>> x, info = krasnoselskii_mann(T, torch.zeros(1, 3), tol=1e-8, max_iter=100, beta=1.0)
        >>> round(float(x[0, 0]), 6), info.converged
        (2.0, True)
    """
    _check_args(tol, max_iter)
    if not 0 < beta <= 1:
        raise ValueError(f"beta must lie in (0, 1], got {beta}.")
    info = SolverInfo("picard" if beta == 1 else "krasnoselskii-mann")
    monitor = Monitor(info, tol, check_every, x0.device)
    x = x0
    for _ in range(max_iter):
        fx = monitor.apply(T, x)
        x_next = (1 - beta) * x + beta * fx
        converged_x = monitor.record(fx, x, x_next)
        x = x_next
        if converged_x is not None:
            x = converged_x
            break
    else:
        converged_x = monitor.flush()
        x = x if converged_x is None else converged_x
    _finish(info, tol, strict)
    return x, info


def picard(T: FixedPointMap, x0: torch.Tensor, tol: float = 1e-3, max_iter: int = 50,
           strict: bool = False, check_every: int | None = None) -> tuple[torch.Tensor, SolverInfo]:
    """Plain fixed-point iteration ``x ← T(x)``."""
    return krasnoselskii_mann(T, x0, tol, max_iter, beta=1.0, strict=strict, check_every=check_every)


def anderson_weights(G: torch.Tensor, lam: float = 1e-4) -> torch.Tensor:
    """``α = argmin ‖G α‖² s.t. Σα = 1`` for residual columns G (B, d, n), batched.

    Lagrange conditions give ``(GᵀG) α = μ 1``: solve ``(GᵀG + λI) w = 1`` and normalise
    ``α = w / Σw`` (λ: a small Tikhonov term for nearly dependent residuals).
    """
    n = G.shape[-1]
    gram = G.transpose(1, 2) @ G
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1, keepdim=True).clamp(min=1e-30)[..., None]
    eye = torch.eye(n, dtype=G.dtype, device=G.device)
    # solve_ex: no error check, which would read a flag back to the host (λI keeps the system regular)
    w, _ = torch.linalg.solve_ex(gram / scale + lam * eye, torch.ones(G.shape[0], n, 1, dtype=G.dtype, device=G.device))
    return w / w.sum(dim=1, keepdim=True)


@torch.no_grad()
def anderson(T: FixedPointMap, x0: torch.Tensor, tol: float = 1e-3, max_iter: int = 50, m: int = 5,
             beta: float = 1.0, lam: float = 1e-4, strict: bool = False,
             check_every: int | None = None) -> tuple[torch.Tensor, SolverInfo]:
    """Anderson acceleration with memory ``m`` (see the module docstring; ``check_every`` there too).

    Example:
        >>> A = torch.tensor([[0.9, 0.3], [-0.2, 0.8]], dtype=torch.float64)  # x ↦ A x + b contracts
        >>> b = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> T = lambda x: x @ A.T + b
        >>> x, info = anderson(T, torch.zeros(1, 2, dtype=torch.float64), tol=1e-10, m=3)
        >>> torch.allclose(x, T(x)), info.iterations, picard(T, 0 * x, tol=1e-10, max_iter=500)[1].iterations
        (True, 13, 177)
    """
    _check_args(tol, max_iter)
    if m < 1:
        raise ValueError(f"the Anderson memory m must be ≥ 1, got {m}.")
    if not lam > 0:
        raise ValueError(f"lam must be > 0 (it keeps Anderson's small linear system regular), got {lam}.")
    info = SolverInfo("anderson")
    monitor = Monitor(info, tol, check_every, x0.device)
    B = x0.shape[0]
    xs, fs = [], []  # the last m iterates and their images, flattened (B, d)
    x = x0
    for _ in range(max_iter):
        fx = monitor.apply(T, x)
        converged_x = monitor.record(fx, x, fx)  # converged at this iteration: the answer is T(x)
        if converged_x is not None:
            x = converged_x
            break
        xs.append(x.reshape(B, -1))
        fs.append(fx.reshape(B, -1))
        xs, fs = xs[-m:], fs[-m:]
        X, F = torch.stack(xs, -1), torch.stack(fs, -1)  # (B, d, n)
        alpha = anderson_weights(F - X, lam)  # (B, n, 1)
        x = (beta * (F @ alpha) + (1 - beta) * (X @ alpha)).reshape(x0.shape)
    else:
        converged_x = monitor.flush()
        x = x if converged_x is None else converged_x
    _finish(info, tol, strict)
    return x, info


SOLVERS: dict[str, Callable] = {"picard": picard, "krasnoselskii-mann": krasnoselskii_mann, "anderson": anderson}


def lipschitz_estimate(T: FixedPointMap, x: torch.Tensor, iterations: int = 20,
                       generator: torch.Generator | None = None) -> float:
    """Largest singular value of the Jacobian ``∂T/∂x`` at ``x`` (batch max), by power
    iteration on ``JᵀJ``: ``v ← Jᵀ(J v) / ‖Jᵀ(J v)‖``, ``σ ≈ ‖J v‖``. Below 1 means that T
    contracts near x. Uses ``torch.func.jvp`` / ``vjp``; a lower bound that tightens with
    more iterations.

    Example:
        >>> T = lambda x: 0.5 * x.flip(-1)            # an orthogonal map scaled by ½
        >>> round(lipschitz_estimate(T, torch.rand(2, 4)), 4)
        0.5
    """
    x = x.detach()
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    sigma = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    _, vjp_fn = torch.func.vjp(T, x)
    for _ in range(iterations):
        v = v / v.flatten(1).norm(dim=1).clamp(min=1e-30).view(-1, *[1] * (x.dim() - 1))
        _, Jv = torch.func.jvp(T, (x,), (v,))
        sigma = Jv.flatten(1).norm(dim=1)
        (v,) = vjp_fn(Jv)
    return float(sigma.detach().max())


def preconditioned_cg(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, x0: torch.Tensor,
                      precondition: Callable[[torch.Tensor], torch.Tensor], iterations: int) -> torch.Tensor:
    r"""Solve ``M x = b`` (``M`` symmetric positive definite, given as ``apply``) by preconditioned
    conjugate gradients (Hestenes & Stiefel 1952; Saad, *Iterative Methods*, Alg. 9.1), batched
    over the first axis, for a fixed number of iterations from ``x0``.

    ``precondition(r) ≈ M⁻¹ r`` (symmetric positive definite) groups the eigenvalues of the
    preconditioned system, so a few iterations suffice. The count is fixed — no residual is
    read back to the host — so the solve queues on a GPU without waiting and is differentiable
    by autograd like any other computation.

    Example:
        >>> M = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> b = torch.tensor([[1.0, 2.0]])
        >>> x = preconditioned_cg(lambda v: v @ M, b, torch.zeros(1, 2), lambda r: r / 4, 2)
        >>> torch.allclose(x @ M, b, atol=1e-6)
        True
    """
    dims = tuple(range(1, b.dim()))
    tiny = torch.finfo(b.dtype).tiny
    x = x0
    r = b - apply(x)
    z = precondition(r)
    p = z
    rz = (r * z).sum(dims, keepdim=True)
    for _ in range(iterations):
        Mp = apply(p)
        a = rz / (p * Mp).sum(dims, keepdim=True).clamp(min=tiny)
        x = x + a * p
        r = r - a * Mp
        z = precondition(r)
        rz_new = (r * z).sum(dims, keepdim=True)
        p = z + rz_new / rz.clamp(min=tiny) * p
        rz = rz_new
    return x
