"""Deep-equilibrium model: every backward mode gives the right gradient, and failures are loud.

Float64, small problems, tight tolerances: the implicit gradient must match finite
differences and the gradient of the map unrolled to convergence (relative error ≤ 1e-5).
"""

import functools

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
