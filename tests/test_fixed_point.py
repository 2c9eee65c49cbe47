"""Fixed-point solvers: they reach known fixed points, and they fail loudly."""

import pytest
import torch

from deblur_edu.learned.fixed_point import (
    CUDA_CHECK_EVERY,
    FixedPointError,
    Monitor,
    SolverInfo,
    anderson,
    anderson_weights,
    krasnoselskii_mann,
    lipschitz_estimate,
    picard,
)
from deblur_edu.learned.deq import conjugate_gradient


def linear_contraction(n=60, batch=3, radius=0.9, seed=0):
    """T(x) = M x + b with ‖M‖ = radius (symmetric, eigenvalues spread in [−radius, radius])."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    M = Q @ torch.diag(torch.linspace(-radius, radius, n, dtype=torch.float64)) @ Q.T
    b = torch.randn(batch, n, generator=g, dtype=torch.float64)
    x_star = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - M, b.T).T
    return (lambda x: x @ M.T + b), x_star, M


@pytest.mark.parametrize("solver", [picard, krasnoselskii_mann, anderson])
def test_solvers_reach_the_fixed_point_of_a_contraction(solver):
    T, x_star, _ = linear_contraction()
    x, info = solver(T, torch.zeros_like(x_star), tol=1e-10, max_iter=2000)
    assert info.converged and info.residuals[-1] < 1e-10
    assert torch.allclose(x, x_star, atol=1e-8)


def test_anderson_needs_fewer_iterations_than_picard():
    T, x_star, _ = linear_contraction()
    _, a = anderson(T, torch.zeros_like(x_star), tol=1e-8, max_iter=500)
    _, p = picard(T, torch.zeros_like(x_star), tol=1e-8, max_iter=500)
    assert a.iterations < p.iterations / 2


def test_anderson_weights_are_the_constrained_least_squares_solution():
    G = torch.randn(2, 30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    alpha = anderson_weights(G, lam=0.0)
    assert torch.allclose(alpha.sum(1), torch.ones(2, 1, dtype=torch.float64))
    best = (G @ alpha).norm(dim=1)
    for _ in range(20):  # any other affine combination has a larger residual
        other = alpha + 0.1 * torch.randn_like(alpha)
        other = other + (1 - other.sum(1, keepdim=True)) / 4
        assert ((G @ other).norm(dim=1) >= best - 1e-12).all()


def test_krasnoselskii_mann_converges_where_picard_cycles():
    """A rotation by 90° is non-expansive, not contractive: Picard cycles, KM averages it down."""
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    T = lambda x: x @ R.T  # noqa: E731
    x0 = torch.ones(1, 2, dtype=torch.float64)
    assert not picard(T, x0, tol=1e-6, max_iter=200)[1].converged
    x, info = krasnoselskii_mann(T, x0, tol=1e-6, max_iter=200, beta=0.5)
    assert info.converged and float(x.abs().max()) < 1e-5


def test_nan_is_reported_with_the_trace():
    with pytest.raises(FixedPointError, match="NaN/Inf") as err:
        picard(lambda x: x * float("nan"), torch.ones(1, 3))
    assert err.value.info.iterations == 1


def test_a_non_contractive_map_is_reported_as_diverging():
    with pytest.raises(FixedPointError, match="not a contraction") as err:
        anderson(lambda x: 3.0 * x + 1.0, torch.ones(2, 5, dtype=torch.float64), max_iter=200, m=1)
    assert "Last relative residuals" in str(err.value)


def test_strict_non_convergence_is_an_error():
    T, x_star, _ = linear_contraction(radius=0.99)
    with pytest.raises(FixedPointError, match="no convergence"):
        picard(T, torch.zeros_like(x_star), tol=1e-12, max_iter=5, strict=True)
    x, info = picard(T, torch.zeros_like(x_star), tol=1e-12, max_iter=5)  # not strict: reported
    assert not info.converged and info.iterations == 5


@pytest.mark.parametrize("kwargs, match", [(dict(tol=0.0), "tol"), (dict(max_iter=0), "max_iter"),
                                           (dict(m=0), "memory"), (dict(lam=0.0), "lam must be > 0")])
def test_bad_solver_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        anderson(lambda x: x, torch.ones(1, 2), **kwargs)


def nonlinear_contraction():
    W = torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.12
    return lambda x: torch.tanh(x @ W.T) + 0.3


@pytest.mark.parametrize("solver", [picard, krasnoselskii_mann, anderson])
@pytest.mark.parametrize("max_iter", [7, 300])  # stopped at the cap, and converged
def test_checking_every_k_iterations_changes_nothing_but_the_read_backs(solver, max_iter):
    T, x0 = nonlinear_contraction(), torch.zeros(3, 64, dtype=torch.float64)
    x1, info1 = solver(T, x0, tol=1e-9, max_iter=max_iter, check_every=1)
    for k in (3, 5):
        xk, infok = solver(T, x0, tol=1e-9, max_iter=max_iter, check_every=k)
        assert torch.equal(xk, x1)
        assert (infok.iterations, infok.converged, infok.residuals) == (info1.iterations, info1.converged, info1.residuals)


class ReadBacks:
    """Counts the tensor-to-host conversions (each waits for a GPU's queue) while active."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("tolist", "item", "__float__", "__bool__", "__int__", "cpu", "numpy"):
            original = getattr(torch.Tensor, name)

            def counted(t, *args, _original=original, **kwargs):
                self.count += 1
                return _original(t, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("solver", [picard, anderson])
def test_a_solver_reads_back_once_every_check_every_iterations(solver, monkeypatch):
    T, x0 = nonlinear_contraction(), torch.zeros(3, 64, dtype=torch.float64)
    iterations = solver(T, x0, tol=1e-9, max_iter=300)[1].iterations
    reads = ReadBacks(monkeypatch)
    _, info = solver(T, x0, tol=1e-9, max_iter=300, check_every=5)
    assert info.iterations == iterations and reads.count == -(-iterations // 5)
    reads.count = 0
    solver(T, x0, tol=1e-9, max_iter=300, check_every=1)
    assert reads.count == iterations


def test_check_every_defaults_to_every_iteration_on_the_cpu_only():
    assert Monitor(SolverInfo("t"), 1e-3, None, torch.device("cpu")).check_every == 1
    assert Monitor(SolverInfo("t"), 1e-3, None, torch.device("cuda")).check_every == CUDA_CHECK_EVERY > 1
    with pytest.raises(ValueError, match="check_every"):
        picard(lambda x: x, torch.ones(1, 2), check_every=0)


def test_errors_found_at_a_later_check_name_the_iteration_they_happened_at():
    with pytest.raises(FixedPointError, match="after 1 iterations") as err:
        picard(lambda x: x * float("nan"), torch.ones(1, 3), check_every=4)
    assert err.value.info.iterations == 1


def test_lipschitz_estimate_is_the_spectral_norm_of_a_linear_map():
    T, x_star, M = linear_contraction(n=30, radius=0.7)
    est = lipschitz_estimate(T, x_star, iterations=200, generator=torch.Generator().manual_seed(0))
    assert abs(est - float(torch.linalg.matrix_norm(M, ord=2))) < 1e-3


def test_conjugate_gradient_solves_an_spd_system():
    g = torch.Generator().manual_seed(3)
    B = torch.randn(20, 20, generator=g, dtype=torch.float64)
    S = B @ B.T + 20 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(2, 20, generator=g, dtype=torch.float64)
    u, info = conjugate_gradient(lambda v: v @ S, b, tol=1e-12, max_iter=100)
    assert info.converged and torch.allclose(u @ S, b, atol=1e-9)


def test_a_map_that_refuses_a_nan_input_still_reports_the_nan_iterate_first():
    """With checks every 3 iterations the map sees the NaN iterate before a check does; the solver
    reports the NaN (at its iteration), not the map's own complaint."""
    def T(x):
        if not torch.isfinite(x).all():
            raise ValueError("the map's own input check")
        return x * float("nan")

    for k in (1, 3):
        with pytest.raises(FixedPointError, match="after 1 iterations"):
            picard(T, torch.ones(1, 3), check_every=k)
        with pytest.raises(FixedPointError, match="after 1 iterations"):
            anderson(T, torch.ones(1, 3), check_every=k)


def test_a_divergence_found_at_a_later_check_is_reported_as_with_every_check():
    reports = []
    for k in (1, 4):
        with pytest.raises(FixedPointError, match="not a contraction") as err:
            anderson(lambda x: 3.0 * x + 1.0, torch.ones(2, 5, dtype=torch.float64), max_iter=200, m=1, check_every=k)
        reports.append((str(err.value), err.value.info.iterations))
    assert reports[0] == reports[1]
