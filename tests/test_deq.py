"""Deep-equilibrium model: every backward mode gives the right gradient, and failures are loud.

Float64, small problems, tight tolerances: the implicit gradient must match finite
differences and the gradient of the map unrolled to convergence (relative error ≤ 1e-5).
"""

import functools
import warnings

import pytest
import torch

from deblur_edu.experiments.ch4_reference_gradient import (UNROLL_STEPS, load_reference, parameter_gradient, problem,
                                                          small_deq)
from deblur_edu.learned import DEQ
from deblur_edu.learned.fixed_point import FixedPointError, lipschitz_estimate
from deblur_edu.physics import Blur

Y, K, TARGET = problem()


def make(backward="jfb", form="gradient", **kw):
    return small_deq(backward, form, **kw)


def loss_and_gradient(net):
    net.zero_grad()
    loss = ((net(Y, K) - TARGET) ** 2).sum()
    loss.backward()
    return float(loss.detach()), torch.cat([p.grad.flatten() for p in net.parameters()])


def rel(a, b):
    return float((a - b).norm() / b.norm())


@functools.lru_cache(maxsize=None)
def reference(form: str, preconditioned: bool = False) -> torch.Tensor:
    """The exact gradient (unrolled to convergence), computed once per (form, options) and reused."""
    options = dict(precondition=True, strength=0.1, step_size=1.0) if preconditioned else {}
    return parameter_gradient("unrolled", form, unroll_steps=400 if preconditioned else UNROLL_STEPS, **options)


def test_the_stored_reference_is_the_unrolled_gradient():
    """Chapter 4 compares every backward mode with a stored reference instead of unrolling 300 steps."""
    assert rel(load_reference(), reference("gradient")) <= 1e-12


@pytest.mark.parametrize("form", ["gradient", "proximal"])
def test_the_map_contracts_at_initialisation(form):
    net = make(form=form)
    A = Blur(K, "valid")
    with torch.no_grad():
        x0 = net.initial(A, Y)
    assert lipschitz_estimate(lambda x: net.T(x, A, Y), x0, iterations=50) < 1


@pytest.mark.parametrize("form", ["gradient", "proximal"])
@pytest.mark.parametrize("backward", ["implicit-anderson", "implicit-cg", "neumann-200"])
def test_implicit_gradients_equal_the_unrolled_to_convergence_gradient(form, backward):
    _, g = loss_and_gradient(make(backward, form))
    assert rel(g, reference(form)) <= 1e-5


@pytest.mark.parametrize("form", ["gradient", "proximal"])
@pytest.mark.parametrize("backward", ["implicit-anderson", "implicit-cg"])
def test_implicit_gradients_hold_with_the_preconditioner(form, backward):
    options = dict(precondition=True, strength=0.1, step_size=1.0)
    _, g = loss_and_gradient(make(backward, form, **options))
    assert rel(g, reference(form, preconditioned=True)) <= 1e-5


def test_implicit_gradient_equals_finite_differences():
    net = make("implicit-anderson")
    _, g = loss_and_gradient(net)
    params = list(net.parameters())
    offsets = torch.cumsum(torch.tensor([0] + [p.numel() for p in params]), 0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):  # random coordinates of the flattened parameter vector
        i = int(torch.randint(int(offsets[-1]), (1,), generator=gen))
        j = int(torch.searchsorted(offsets, torch.tensor(i), right=True)) - 1
        p, local = params[j], i - int(offsets[j])
        h = 1e-6
        with torch.no_grad():
            p.view(-1)[local] += h
            plus = float(((net(Y, K) - TARGET) ** 2).sum())
            p.view(-1)[local] -= 2 * h
            minus = float(((net(Y, K) - TARGET) ** 2).sum())
            p.view(-1)[local] += h
        fd = (plus - minus) / (2 * h)
        assert abs(fd - float(g[i])) <= 1e-5 * max(1.0, abs(fd)), (i, fd, float(g[i]))


def test_jfb_is_a_descent_direction():
    _, true_gradient = loss_and_gradient(make("implicit-anderson"))
    _, jfb = loss_and_gradient(make("jfb"))
    assert float(jfb @ true_gradient) > 0
    assert rel(jfb, true_gradient) > 1e-3  # and it is a different direction, not the same one


def test_backward_diagnostics_are_reported():
    net = make("implicit-anderson")
    loss_and_gradient(net)
    assert net.forward_info.converged and net.backward_info.converged
    assert net.backward_info.iterations <= net.max_iter


def test_unknown_backward_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backward mode"):
        DEQ(backward="implicit")
    with pytest.raises(ValueError, match="unknown form"):
        DEQ(form="prox")


def test_a_non_contractive_map_is_a_clear_error():
    net = make(lipschitz=50.0)
    with pytest.raises(FixedPointError, match="contraction|NaN"):
        net(Y, K)


def test_a_non_converging_solve_is_a_clear_error_when_strict_and_a_warning_otherwise():
    net = make(strict=True)
    net.max_iter = 2
    with pytest.raises(FixedPointError, match="no convergence"):
        net(Y, K)
    net.strict = False
    with pytest.warns(RuntimeWarning, match="no convergence"):
        net(Y, K)


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match="built for 1 channel"):
        make()(torch.rand(1, 3, 12, 12, dtype=torch.float64), K)


def test_the_residual_denoiser_removes_what_its_cnn_predicts():
    net = make(residual=True)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    d = net.denoiser
    assert torch.allclose(d(x), x - d.lipschitz * d.cnn(x))


def test_the_gradient_form_equilibrium_solves_its_equation():
    """x* = T(x*) ⇔ F(x*) = Aᵀ(Ax* − y) + βDᵀDx* + λ(x* − D(x*)) = 0, with or without P."""
    from deblur_edu.classical.priors import grad, grad_adjoint

    A = Blur(K, "valid")
    for precondition in (False, True):
        net = make(strength=0.1, precondition=precondition, step_size=1.0 if precondition else 0.5)
        with torch.no_grad():
            x = net.solve(A, Y)
            F = (A.adjoint(A(x) - Y) + net.balance * grad_adjoint(grad(x))
                 + net.log_strength.exp() * (x - net.denoiser(x)))
        assert float(F.norm() / A.adjoint(Y).norm()) < 1e-9


def test_bad_strength_is_a_clear_error():
    with pytest.raises(ValueError, match="strength must be > 0"):
        DEQ(strength=0.0)


def test_mixed_precision_leaves_the_deq_in_float32():
    """Under autocast (the training loop's ``amp`` on CUDA; float16 on the CPU here) the DEQ
    still solves in float32: the same output as without autocast."""
    from deblur_edu.kernels import gaussian

    torch.manual_seed(0)
    net = DEQ(features=8, depth=3, max_iter=10)
    y = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    k = gaussian(5, 1.0)
    plain = net(y, k)
    with torch.autocast("cpu", dtype=torch.float16):
        mixed = net(y, k)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, plain, atol=1e-6)


# ----- the hqs form: plug-and-play's HQS at one learned level, with chapter 2's denoiser ----------
def small_hqs(**kw):
    torch.manual_seed(0)
    options = dict(form="hqs", width=4, levels=1, max_iter=40, tol=1e-4)
    return DEQ(**{**options, **kw}).double()


def test_the_hqs_form_needs_sigma_and_says_how_to_give_it():
    net = small_hqs()
    with pytest.raises(ValueError, match=r"net\(y, k, sigma\)"):
        net(Y, K)
    assert net.uses_sigma and not make().uses_sigma


def test_the_hqs_levels_follow_their_formula_and_floor_sigma():
    from deblur_edu.learned.pnp import NOISE_FLOOR

    net = small_hqs(strength=0.3, level_slope=2.0, level_floor=0.02)
    s, alpha = net.level_and_weight(torch.tensor([0.0, 0.01, 0.03], dtype=torch.float64).reshape(-1, 1, 1, 1))
    sigma = torch.tensor([NOISE_FLOOR, 0.01, 0.03], dtype=torch.float64)
    assert torch.allclose(s.flatten(), 2.0 * sigma + 0.02)
    assert torch.allclose(alpha.flatten(), 0.3 * sigma**2 / (2.0 * sigma + 0.02) ** 2)


def hqs_data_step(net, A, z, sigma=0.02):
    """T(z) of an hqs DEQ whose denoiser is still the identity (its head is zero at initialisation):
    the data step's x, and the residual of (AᵀA + αI) x = Aᵀy + αz relative to ‖Aᵀy‖."""
    sigma = torch.full((Y.shape[0], 1, 1, 1), sigma, dtype=torch.float64)
    with torch.no_grad():
        x = net.T(z, A, Y, sigma)
        _, alpha = net.level_and_weight(sigma)
        residual = A.adjoint(A(x)) + alpha * x - A.adjoint(Y) - alpha * z
    return x, float(residual.norm() / A.adjoint(Y).norm())


def test_the_hqs_data_step_solves_its_normal_equations():
    """valid: CG converges to the solution; circular: the preconditioner (|K|² + α)⁻¹ *is* the inverse,
    so one iteration solves it exactly (a wrong |K|², α or start would not)."""
    z = torch.rand(*Blur(K, "valid").input_shape(Y.shape), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert hqs_data_step(small_hqs(cg_iterations=60), Blur(K, "valid"), z)[1] < 1e-8
    circular = Blur(K, "circular")
    assert hqs_data_step(small_hqs(cg_iterations=1), circular, torch.rand_like(Y))[1] < 1e-10


def test_the_hqs_map_takes_sigma_as_a_number_too():
    net, A = small_hqs(), Blur(K, "valid")
    z = torch.rand(*A.input_shape(Y.shape), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(net.T(z, A, Y, 0.02), net.T(z, A, Y, net.noise_level(0.02, Y)))
    with pytest.raises(ValueError, match=r"net\(y, k, sigma\)"):
        net.T(z, A, Y)


class Shrink(torch.nn.Module):
    """A contractive stand-in denoiser with a learnable strength c: ``D(x, s) = (x + c s / 2) / (1 + c s)``
    pulls x towards 0.5, more at a larger level s. (HQS with the identity "denoiser" of an untrained
    U-Net converges as slowly as least squares in the blur's near-null space.)"""

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(20.0, dtype=torch.float64))

    def denoise(self, x, sigma_map):  # what the DEQ calls: σ already a (B, 1, H, W) map
        cs = self.c * sigma_map
        return (x + cs / 2) / (1 + cs)


def test_the_hqs_equilibrium_is_a_fixed_point_and_every_parameter_learns():
    net = small_hqs(backward="jfb")
    net.denoiser = Shrink()
    out = net(Y, K, 0.02)
    assert net.forward_info.converged and net.forward_info.residual < 1e-4
    ((out - TARGET) ** 2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in net.parameters())
    real = small_hqs(backward="jfb")  # and with the U-Net: a gradient for every weight of it too
    ((real(Y, K, 0.02) - TARGET) ** 2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in real.parameters())


def test_the_hqs_implicit_gradient_equals_finite_differences_for_the_level():
    """The level parameters enter every application of T: the implicit gradient, not JFB's, is their
    exact derivative through the equilibrium."""
    net = small_hqs(backward="implicit-anderson", tol=1e-12, max_iter=300)
    net.denoiser = Shrink()
    net.zero_grad()
    ((net(Y, K, 0.02) - TARGET) ** 2).sum().backward()
    for p in (net.log_level_floor, net.log_level_slope, net.log_strength):
        h = 1e-6
        with torch.no_grad():
            p += h
            plus = float(((net(Y, K, 0.02) - TARGET) ** 2).sum())
            p -= 2 * h
            minus = float(((net(Y, K, 0.02) - TARGET) ** 2).sum())
            p += h
        fd = (plus - minus) / (2 * h)
        assert abs(fd - float(p.grad)) <= 1e-5 * max(1.0, abs(fd)), (fd, float(p.grad))


def test_the_training_budget_does_not_warn_but_evaluation_and_strict_do():
    """train_max_iter caps the forward *and* the adjoint solve in training, silently; evaluation uses
    max_iter and warns; strict raises in both."""
    net = small_hqs(max_iter=3, train_max_iter=1, tol=1e-12, backward="implicit-anderson")
    net.denoiser = Shrink()
    net.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = net(Y, K, 0.02)
        net.eval()  # switching mode before backward does not change the adjoint's cap: the forward call's holds
        out.sum().backward()
    assert net.forward_info.iterations == 1 and net.backward_info.iterations == 1
    with pytest.warns(RuntimeWarning, match="no convergence"):
        net(Y, K, 0.02)
    assert net.forward_info.iterations == 3
    net.train()
    net.strict = True
    with pytest.raises(FixedPointError, match="no convergence"):
        net(Y, K, 0.02)


def test_bad_counts_are_a_clear_error():
    for key in ("cg_iterations", "train_max_iter", "max_iter"):
        with pytest.raises(ValueError, match=f"{key} must be an integer >= 1"):
            DEQ(form="hqs", **{key: 0})


def test_bad_levels_are_a_clear_error():
    with pytest.raises(ValueError, match="level_slope and level_floor must be > 0"):
        DEQ(form="hqs", level_floor=0.0)
