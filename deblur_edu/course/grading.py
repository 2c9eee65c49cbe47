"""Automatic checks for the course assignments (``tutorials/``).

Each ``check_*`` function calls a student's implementation on small test problems, compares
it with the library's reference, and raises ``AssertionError`` with a hint when they
disagree — or prints a one-line confirmation when they agree. A check is only useful if it
can fail: ``tests/test_grading.py`` feeds each one typical wrong answers.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..classical import wiener
from ..classical.priors import grad, grad_adjoint, grad_otf_power, prox_tv
from ..learned import Reblurrer, UNet
from ..learned.fixed_point import picard
from ..learned.reblur import frozen, reblur_module_loss, self_supervised_reblur_loss, supervised_reblur_loss
from ..learned.reversible import Column
from ..physics import Blur, psf2otf


def _kernels() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, (h, w) in {"odd 5×5": (5, 5), "even 4×4": (4, 4), "non-symmetric 3×6": (3, 6)}.items():
        k = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
        out[name] = k / k.sum()
    return out


def _image(shape=(1, 1, 16, 20), seed=1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _compare(got, expected, what: str, hint: str, atol: float = 1e-8) -> None:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(got).__name__}.")
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}. {hint}")
    err = float((got - expected).abs().max())
    if not err <= atol:
        raise AssertionError(f"{what}: largest difference {err:.3g} from the reference. {hint}")


def check_psf2otf(student: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> None:
    """``student(k, (H, W))`` must return ``rfft2`` of k zero-padded and centred at (0, 0)."""
    for name, k in _kernels().items():
        _compare(student(k, (16, 20)), psf2otf(k, (16, 20)), f"psf2otf, {name} kernel",
                 "Zero-pad k to (H, W), roll its centre (h // 2, w // 2) to (0, 0), then take rfft2.")
    print("✓ psf2otf agrees with the reference for odd, even and non-symmetric kernels")


def check_circular_blur(student: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``student(x, k)`` must equal circular convolution ``Blur(k, "circular")(x)``."""
    x = _image()
    for name, k in _kernels().items():
        _compare(student(x, k), Blur(k, "circular")(x), f"circular blur, {name} kernel",
                 "Multiply rfft2(x) by the OTF and invert with irfft2(..., s=x.shape[-2:]).")
    print("✓ circular blur agrees with the reference")


def check_adjoint(blur: Callable, adjoint: Callable) -> None:
    """``⟨blur(x, k), y⟩ = ⟨x, adjoint(y, k)⟩`` on random x, y."""
    x, y = _image(seed=2), _image(seed=3)
    for name, k in _kernels().items():
        lhs, rhs = float((blur(x, k) * y).sum()), float((x * adjoint(y, k)).sum())
        if abs(lhs - rhs) > 1e-8 * max(1.0, abs(lhs)):
            raise AssertionError(
                f"adjoint, {name} kernel: <Ax, y> = {lhs:.6f} but <x, Aᵀy> = {rhs:.6f}. "
                "The adjoint of multiplying by K is multiplying by conj(K) (correlation, not convolution)."
            )
    print("✓ the adjoint identity <Ax, y> = <x, Aᵀy> holds")


def check_wiener(student: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """``student(y, k, balance)`` must be the gradient-regularised Wiener/Tikhonov filter."""
    y = _image(seed=4)
    for name, k in _kernels().items():
        for balance in (1e-3, 1e-1):
            _compare(student(y, k, balance), wiener(y, k, balance, "gradient"), f"Wiener, {name}, balance={balance}",
                     "X̂ = conj(K)·Y / (|K|² + balance·(|D_h|² + |D_v|²)); use grad_otf_power for the second term.")
    print("✓ Wiener filter agrees with the reference")


def reference_admm_step(x, z, u, y, k, lam: float, rho: float):
    """One scaled-ADMM iteration for circular TV (chapter 2, §2.4): returns (x, z, u)."""
    shape = y.shape[-2:]
    K = psf2otf(k, shape)
    num = K.conj() * torch.fft.rfft2(y) + rho * torch.fft.rfft2(grad_adjoint(z - u))
    x = torch.fft.irfft2(num / (K.abs() ** 2 + rho * grad_otf_power(shape, y.device, y.dtype)), s=shape)
    z = prox_tv(grad(x) + u, lam / rho)
    return x, z, u + grad(x) - z


def check_admm_step(student: Callable) -> None:
    """``student(x, z, u, y, k, lam, rho)`` must return the next (x, z, u) of circular TV-ADMM."""
    y = _image(seed=5)
    g = torch.Generator().manual_seed(6)
    z = 0.1 * torch.randn(1, 1, 2, *y.shape[-2:], generator=g, dtype=torch.float64)
    u = 0.05 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    for name, k in _kernels().items():
        expected = reference_admm_step(y, z, u, y, k, 0.02, 0.2)
        got = student(y, z, u, y, k, 0.02, 0.2)
        if not (isinstance(got, tuple) and len(got) == 3):
            raise AssertionError("admm_step must return the tuple (x, z, u).")
        hints = ("x-step: (conj(K)·Y + ρ·F(Dᵀ(z − u))) / (|K|² + ρ|D|²).",
                 "z-step: isotropic shrinkage prox_tv(Dx + u, λ/ρ) of the *new* x.",
                 "u-step: u + Dx − z with the new x and z.")
        for part, (a, b, hint) in zip("xzu", zip(got, expected, hints)):
            _compare(a, b, f"ADMM step, {name}, {part}", hint)
    print("✓ one ADMM iteration agrees with the reference")


# ----- assignment 3: learned gradient descent --------------------------------------------
def _valid_problem(k: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A scene ``x`` and an observation ``y`` of the ``valid`` blur of a larger scene."""
    A = Blur(k, "valid")
    x = _image((2, 1, 18, 22), seed)
    y = _image(A.output_shape(x.shape), seed + 1)
    return x, y


def check_data_gradient(student: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``student(x, y, k)`` must return ``∇f(x) = Aᵀ(A x − y)`` for the ``valid`` blur ``A``.

    The reference is automatic differentiation of ``f(x) = ½‖A x − y‖²``: the check needs no
    closed form, only the definition of a gradient.
    """
    for name, k in _kernels().items():
        x, y = _valid_problem(k, seed=7)
        x = x.requires_grad_()
        f = 0.5 * ((Blur(k, "valid")(x) - y) ** 2).sum()
        (expected,) = torch.autograd.grad(f, x)
        _compare(student(x.detach(), y, k), expected, f"data gradient, {name} kernel",
                 "∇f = Aᵀ(A x − y) with A = Blur(k, 'valid') and Aᵀ = A.adjoint: the gradient lives on "
                 "the scene (x's shape), not on the observation.")
    print("✓ the data gradient equals autograd's gradient of ½‖Ax − y‖²")


def _tiny_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
    return net.double()


def reference_rgdn_step(x, y, k, H: Callable, R: Callable, D: Callable) -> torch.Tensor:
    """One RGDN update ``x + D(H(∇f(x)) − R(x))`` with ``∇f = Aᵀ(A x − y)`` (chapter 3)."""
    A = Blur(k, "valid")
    grad_f = A.adjoint(A(x) - y)
    return x + D(H(grad_f) - R(x))


def check_rgdn_step(student: Callable) -> None:
    """``student(x, y, k, H, R, D)`` must return ``x + D(H(∇f(x)) − R(x))``."""
    H, R, D = _tiny_cnn(1), _tiny_cnn(2), _tiny_cnn(3)
    with torch.no_grad():
        for name, k in _kernels().items():
            x, y = _valid_problem(k, seed=11)
            _compare(student(x, y, k, H, R, D), reference_rgdn_step(x, y, k, H, R, D), f"RGDN step, {name} kernel",
                     "g = H(∇f(x)) − R(x): H acts on the data gradient, R on the current estimate; "
                     "then x + D(g) — D scales the *combined* direction.")
    print("✓ one RGDN step agrees with the reference")


# ----- assignment 4: implicit networks ---------------------------------------------------
def reference_anderson_step(X: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """Next Anderson iterate ``F α`` with ``α = argmin ‖(F − X) α‖ s.t. Σα = 1`` (X, F: (B, d, n))."""
    G = F - X
    w = torch.linalg.solve(G.transpose(1, 2) @ G, torch.ones(G.shape[0], G.shape[-1], 1, dtype=G.dtype))
    return (F @ (w / w.sum(dim=1, keepdim=True)))[..., 0]


def check_anderson_step(student: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``student(X, F)`` with histories X, F of shape (B, d, n) must return the next iterate (B, d)."""
    g = torch.Generator().manual_seed(12)
    for n in (1, 3, 5):
        X = torch.randn(2, 40, n, generator=g, dtype=torch.float64)
        F = X + 0.5 * torch.randn(2, 40, n, generator=g, dtype=torch.float64)
        _compare(student(X, F), reference_anderson_step(X, F), f"Anderson step with {n} stored iterate(s)",
                 "Solve (GᵀG) w = 1 with G = F − X, normalise α = w / Σw, return F α (shape (B, d)). "
                 "Do not mix F and X the other way round: the residual is F − X.", atol=1e-8)
    print("✓ one Anderson step agrees with the reference")


def _contraction_problem():
    """A small contractive map ``T(x) = tanh(W x + U y)/2`` with parameters W, U (float64)."""
    g = torch.Generator().manual_seed(13)
    W = (0.4 * torch.randn(6, 6, generator=g, dtype=torch.float64) / 6 ** 0.5).requires_grad_()
    U = torch.randn(6, 6, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randn(3, 6, generator=g, dtype=torch.float64)
    target = torch.randn(3, 6, generator=g, dtype=torch.float64)

    def T(x):
        return 0.5 * torch.tanh(x @ W.T + y @ U.T)

    return T, (W, U), torch.zeros(3, 6, dtype=torch.float64), target


def check_jfb(student: Callable) -> None:
    """``student(T, x0)`` must solve ``x* = T(x*)`` without recording a graph and return
    ``T(x*)`` differentiable through that one application only (Jacobian-free backprop)."""
    T, params, x0, target = _contraction_problem()
    out = student(T, x0)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise AssertionError("jfb must return T(x*) with a graph to the parameters (call T once with grad enabled).")
    with torch.no_grad():
        x_star, _ = picard(T, x0, tol=1e-12, max_iter=500)
    _compare(out.detach(), T(x_star).detach(), "JFB output", "Solve to convergence (tol ≈ 1e-10), then apply T once more.",
             atol=1e-8)
    got = torch.autograd.grad(((out - target) ** 2).sum(), params, allow_unused=True)
    expected = torch.autograd.grad(((T(x_star.detach()) - target) ** 2).sum(), params)
    for name, a, b in zip("WU", got, expected):
        if a is None:
            raise AssertionError(f"JFB: no gradient reached {name}; T(x*) must be computed with autograd enabled.")
        _compare(a, b, f"JFB gradient for {name}",
                 "Backprop through the last application only: the solve runs under torch.no_grad() and x* is "
                 "detached; a gradient through every iteration is the unrolled one, not JFB.", atol=1e-8)
    print("✓ Jacobian-free backprop: the right output, and the gradient through one application of T")


# ----- assignment 5: reblurring losses ---------------------------------------------------
def _reblur_pair(seed: int):
    """A tiny deblurrer ``M_D`` and reblurring module ``M_R`` (float64), seeded."""
    torch.manual_seed(seed)
    return UNet(width=4, levels=1).double(), Reblurrer(features=4, blocks=1).double()


def _images(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 1, 12, 12, generator=g, dtype=torch.float64) for _ in range(n)]


def check_reblur_module_loss(student: Callable) -> None:
    """``student(M_R, deblurred, blurred, deblurred_sharp)`` = ``‖M_R(L̂) − B‖₁ + ‖M_R(M_D(S)) − M_D(S)‖₁``
    (mean absolute errors), training ``M_R`` only."""
    _, M_R = _reblur_pair(20)
    deblurred, blurred, deblurred_sharp = _images(3, 21)
    deblurred.requires_grad_(), deblurred_sharp.requires_grad_()
    got = student(M_R, deblurred, blurred, deblurred_sharp)
    _compare(got.detach(), reblur_module_loss(M_R, deblurred, blurred, deblurred_sharp).detach(), "L_blur + L_sharp",
             "L_blur compares M_R(deblurred) with the *blurry* image; L_sharp compares M_R(deblurred_sharp) with "
             "deblurred_sharp itself (a clean image must stay unchanged). Use F.l1_loss (the mean).", atol=1e-10)
    got.backward()
    if deblurred.grad is not None or deblurred_sharp.grad is not None:
        raise AssertionError("M_R's loss must not train the deblurrer: detach the deblurred images first.")
    if any(p.grad is None for p in M_R.parameters()):
        raise AssertionError("the loss must train M_R: compute it with autograd enabled, through M_R.")
    print("✓ L_blur + L_sharp: the right value, and it trains M_R only")


def check_supervised_reblur_loss(student: Callable) -> None:
    """``student(M_R, deblurred, sharp)`` = ``‖M_R(L̂) − M_R(S)‖₁`` with ``M_R(S)`` a fixed target."""
    _, M_R = _reblur_pair(22)
    M_R.requires_grad_(False)
    deblurred, sharp = _images(2, 23)
    deblurred.requires_grad_(), sharp.requires_grad_()
    got = student(M_R, deblurred, sharp)
    _compare(got.detach(), supervised_reblur_loss(M_R, deblurred, sharp).detach(), "supervised reblurring loss",
             "Compare the reblurred deblurred image M_R(L̂) with the reblurred sharp image M_R(S), with F.l1_loss; "
             "not with S itself, which would make it a plain L1 loss plus a constant.", atol=1e-10)
    got.backward()
    reference = torch.autograd.grad(supervised_reblur_loss(M_R, deblurred, sharp), deblurred)[0]
    if deblurred.grad is None:
        raise AssertionError("the loss must train the deblurrer: keep the graph through M_R(deblurred).")
    _compare(deblurred.grad, reference, "gradient with respect to the deblurred image",
             "Only M_R(L̂) carries a gradient.", atol=1e-10)
    if sharp.grad is not None:
        raise AssertionError("M_R(S) is a fixed target: compute it under torch.no_grad() (or detach it).")
    print("✓ supervised reblurring loss: the right value, and a gradient through M_R(L̂) only")


def reference_tta_step(M_D: torch.nn.Module, M_R: torch.nn.Module, y: torch.Tensor,
                       optimiser: torch.optim.Optimizer) -> float:
    """One step of test-time adaptation: minimise ``‖M_R(M_D(y)) − sg(M_D(y))‖₁`` over the
    optimiser's parameters, ``M_R`` frozen; returns the loss before the step."""
    with frozen(M_R):
        loss = self_supervised_reblur_loss(M_R, M_D(y))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
    optimiser.step()
    return float(loss.detach())


def check_tta_step(student: Callable) -> None:
    """``student(M_D, M_R, y, optimiser)`` must take one self-supervised step on ``M_D`` (``M_R``
    frozen, the target ``M_D(y)`` under a stop-gradient) and return the loss before it."""
    import copy

    M_D, M_R = _reblur_pair(24)
    (y,) = _images(1, 25)
    mine, theirs = copy.deepcopy(M_D), copy.deepcopy(M_D)
    got = student(mine, M_R, y, torch.optim.SGD(mine.parameters(), lr=0.5))
    expected = reference_tta_step(theirs, M_R, y, torch.optim.SGD(theirs.parameters(), lr=0.5))
    _compare(torch.as_tensor(float(got), dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64),
             "returned loss", "Return the self-supervised loss ‖M_R(M_D(y)) − M_D(y)‖₁ computed before the step.",
             atol=1e-10)
    if any(p.grad is not None for p in M_R.parameters()):
        raise AssertionError("M_R must stay frozen: wrap the step in deblur_edu.learned.reblur.frozen(M_R) "
                             "(or switch off requires_grad on its parameters).")
    for (name, a), b in zip(mine.named_parameters(), theirs.parameters()):
        _compare(a.detach(), b.detach(), f"adapted weight {name}",
                 "Use the stop-gradient: the target is M_D(y).detach(). Without it, the loss can also fall by "
                 "blurring M_D(y) towards M_R(M_D(y)). Then zero_grad, backward, optimiser.step().", atol=1e-10)
    print("✓ one test-time adaptation step: the right loss and the same update as the reference")


# ----- assignment 6: a reversible column -------------------------------------------------------
def _column_problem(seed: int = 30, widths: tuple[int, ...] = (3, 6, 12)):
    """A :class:`~deblur_edu.learned.reversible.Column` with random weights and ``α`` (float64),
    the encoder feature ``e`` and a random input state: the test problem of the column checks."""
    column = Column(list(widths)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in column.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for a in column.raw_alpha:
            a.copy_(torch.empty(a.shape, dtype=a.dtype).uniform_(0.3, 1.5, generator=g))
            a.mul_(torch.where(torch.rand(a.shape, generator=g) < 0.5, -1.0, 1.0).to(a.dtype))
    size = 16
    e = torch.randn(2, widths[0], size, size, generator=g, dtype=torch.float64)
    state = [torch.randn(2, w, size >> l, size >> l, generator=g, dtype=torch.float64) for l, w in enumerate(widths)]
    updates = [lambda finer, coarser, u=u: u(finer, coarser) for u in column.updates]
    alphas = [column.alpha(l).detach() for l in range(len(widths))]
    return column, e, state, updates, alphas


def _compare_state(got, expected: list[torch.Tensor], what: str, hints: Callable[[int], str]) -> None:
    if not isinstance(got, (list, tuple)) or len(got) != len(expected):
        raise AssertionError(f"{what}: return a list of {len(expected)} tensors, one per level (finest first).")
    for level, (a, b) in enumerate(zip(got, expected)):
        _compare(a, b, f"{what}, level {level}", hints(level), atol=1e-10)


def check_column_forward(student: Callable) -> None:
    """``student(e, state, updates, alphas)`` = the new state ``c_l ← α_l c_l + F_l(finer, coarser)``,
    fine to coarse, with the *new* finer level and the *old* coarser level."""
    column, e, state, updates, alphas = _column_problem()
    with torch.no_grad():
        got = student(e, [s.clone() for s in state], updates, alphas)
        expected = column(e, state)

    def hint(level: int) -> str:
        if level == 0:
            return "Level 0's finer input is e, its coarser input the old c_1: c_0 ← α_0·c_0 + F_0(e, c_1)."
        return (f"Level {level}'s finer input is the *new* c_{level - 1} (just computed), its coarser input the "
                f"*old* c_{level + 1} (None at the coarsest level).")

    _compare_state(got, expected, "column forward", hint)
    print("✓ column forward: every level agrees with the reference")


def check_column_inverse(student: Callable) -> None:
    """``student(e, new, updates, alphas)`` = the old state, from the coarsest level down:
    ``old c_l = (new c_l − F_l(finer, old c_{l+1})) / α_l``."""
    column, e, state, updates, alphas = _column_problem(31)
    with torch.no_grad():
        new = column(e, state)
        got = student(e, [s.clone() for s in new], updates, alphas)

    def hint(level: int) -> str:
        return ("Go from the coarsest level down to level 0: level l's update needs the *old* c_{l+1}, so rebuild "
                "that first; its finer input is the new c_{l−1} (e at level 0), which you have. Then subtract "
                "the update and divide by α_l (α may be negative).")

    _compare_state(got, state, "column inverse", hint)
    print("✓ column inverse: the input state is rebuilt from the output, at every level")
