"""Classical deconvolution: exactness in easy cases, convergence, border awareness."""

import pytest
import torch

from deblur_edu.classical import (
    edgetaper,
    hyper_laplacian,
    i_divergence,
    inverse_filter,
    richardson_lucy,
    tv_admm,
    wiener,
    wiener_padded,
)
from deblur_edu.classical.priors import (
    grad,
    grad_adjoint,
    grad_and_hessian,
    grad_and_hessian_adjoint,
    grad_and_hessian_otf_power,
    grad_otf_power,
    hessian,
    hessian_adjoint,
    hessian_otf_power,
    prox_hyper_laplacian,
    prox_hyper_laplacian_isotropic,
    prox_tv,
)
from deblur_edu.data import centre_crop, sample_image
from deblur_edu.kernels import gaussian, motion
from deblur_edu.metrics import psnr
from deblur_edu.physics import Blur, add_noise, crop, fft_convolve, psf2otf
from deblur_edu.synthesis import valid_blur_pair


def camera(size=64, dtype=torch.float64):
    return centre_crop(sample_image("camera"), size).to(dtype)


def test_noise_free_wiener_recovers_circular_blur():
    x = camera()
    k = gaussian(7, 1.0, dtype=torch.float64)
    x_hat = wiener(Blur(k)(x), k, balance=1e-10, regulariser="identity")
    assert torch.allclose(x_hat, x, atol=1e-4)


def test_wiener_is_the_tikhonov_minimiser():
    """The closed form zeroes the gradient of ½‖Kx − y‖² + ½·b‖Dx‖²."""
    x = camera(32)
    k = motion(5, 20, dtype=torch.float64)
    y = add_noise(Blur(k)(x), 0.02, torch.Generator().manual_seed(0))
    b = 3e-3
    x_hat = wiener(y, k, balance=b).requires_grad_(True)
    A = Blur(k)
    loss = 0.5 * ((A(x_hat) - y) ** 2).sum() + 0.5 * b * (grad(x_hat) ** 2).sum()
    (g,) = torch.autograd.grad(loss, x_hat)
    assert float(g.abs().max()) < 1e-10


def test_inverse_filter_blows_up_with_noise():
    x = camera()
    k = gaussian(9, 2.0, dtype=torch.float64)
    y = add_noise(Blur(k)(x), 0.01, torch.Generator().manual_seed(0))
    assert float(psnr(inverse_filter(y, k, threshold=1e-6), x)) < float(psnr(y, x)) - 10


def test_edgetaper_makes_the_border_periodic():
    """After tapering, the jump across the wrap-around border is much smaller."""
    x = camera(64)
    k = gaussian(9, 2.0, dtype=torch.float64)
    jump = lambda t: (t[..., 0, :] - t[..., -1, :]).abs().mean()  # noqa: E731
    assert jump(edgetaper(x, k)) < 0.5 * jump(x)


def test_wiener_padded_beats_plain_wiener_on_valid_data():
    scene = camera(96)
    k = motion(11, 30, dtype=torch.float64)
    y, x = valid_blur_pair(scene, k, 0.01, torch.Generator().manual_seed(1))
    plain = psnr(wiener(y, k, 1e-3).clamp(0, 1), x, crop=5)
    padded = psnr(wiener_padded(y, k, 1e-3).clamp(0, 1), x, crop=5)
    assert float(padded) > float(plain) + 1.0


# ----- Richardson–Lucy --------------------------------------------------------------------
def valid_problem(sigma=0.0, size=64, seed=0):
    scene = camera(size + 10)
    k = motion(9, 45, dtype=torch.float64)
    k = torch.nn.functional.pad(k, (0, 0, 0, 0))
    A = Blur(k, "valid")
    y = A(crop(scene, (0, 10 - (k.shape[-2] - 1), 0, 10 - (k.shape[-1] - 1))))
    x = crop(scene, (A.pads[0], 10 - A.pads[0], A.pads[2], 10 - A.pads[2]))
    return add_noise(y, sigma, torch.Generator().manual_seed(seed)), x, k


def test_richardson_lucy_i_divergence_is_non_increasing():
    y, _, k = valid_problem()
    _, trace = richardson_lucy(y, k, iterations=40, history=True)
    d = torch.tensor(trace["i_divergence"])
    assert bool((d[1:] <= d[:-1] * (1 + 1e-9)).all())
    assert float(d[-1]) < 0.1 * float(d[0])


def test_richardson_lucy_noise_free_psnr_improves():
    y, x, k = valid_problem()
    _, trace = richardson_lucy(y, k, iterations=30, x_true=x, history=True)
    p = trace["psnr"]
    assert p[0] < p[2] < p[9] < p[29]


def test_richardson_lucy_border_does_not_degrade():
    """Unlike zero-padded RL, the border region keeps improving with iterations (noise-free)."""
    y, x, k = valid_problem(size=80)
    border = lambda t: torch.cat([t[..., :8, :].flatten(), t[..., -8:, :].flatten()])  # noqa: E731
    err = [float(((border(richardson_lucy(y, k, n)) - border(x)) ** 2).mean()) for n in (10, 100)]
    assert err[1] < err[0]


# ----- ADMM -------------------------------------------------------------------------------
def admm_problem(sigma=0.01):
    scene = camera(48)
    k = gaussian(7, 1.5, dtype=torch.float64)
    y, x = valid_blur_pair(scene, k, sigma, torch.Generator().manual_seed(2))
    return y, k, x


@pytest.fixture
def flush_denormals():
    """Thousands of float64 ADMM iterations drive residuals into subnormal numbers, which
    the CPU handles ~25× slower; flush them to zero for the high-accuracy reference."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("boundary", ["circular", "valid"])
def test_admm_converges_to_high_accuracy_solution(boundary, flush_denormals):
    y, k, _ = admm_problem()
    kw = dict(lam=2e-3, rho=2e-2, rho_data=0.1, boundary=boundary)
    reference = tv_admm(y, k, iterations=3000, **kw)
    dist = [float((tv_admm(y, k, iterations=n, **kw) - reference).norm()) for n in (10, 50, 200)]
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] < 0.05 * dist[0]


@pytest.mark.parametrize("boundary", ["circular", "valid"])
def test_admm_objective_and_residuals_decrease(boundary):
    y, k, x = admm_problem()
    _, tr = tv_admm(y, k, lam=2e-3, rho=2e-2, rho_data=0.1, iterations=150, boundary=boundary, x_true=x, history=True)
    assert tr["objective"][-1] < tr["objective"][0]
    assert max(tr["objective"][-20:]) - min(tr["objective"][-20:]) < 1e-3 * tr["objective"][-1]
    assert tr["primal_residual"][-1] < 0.01 * tr["primal_residual"][0]
    assert tr["dual_residual"][-1] < 0.01 * tr["dual_residual"][0]
    assert len(tr["psnr"]) == 150


def test_border_aware_tv_beats_circular_tv_on_valid_data():
    scene = camera(110)
    k = motion(15, 60, dtype=torch.float64)
    y, x = valid_blur_pair(scene, k, 0.01, torch.Generator().manual_seed(3))
    circ = psnr(tv_admm(y, k, 1e-3, 1e-2, iterations=60, boundary="circular").clamp(0, 1), x, crop=7)
    aware = psnr(tv_admm(y, k, 1e-3, 1e-2, iterations=60, boundary="valid").clamp(0, 1), x, crop=7)
    assert float(aware) > float(circ) + 1.0


def test_hyper_laplacian_improves_on_blurry_input():
    scene = camera(80)
    k = motion(11, 30, dtype=torch.float64)
    y, x = valid_blur_pair(scene, k, 0.01, torch.Generator().manual_seed(4))
    x_hat = hyper_laplacian(y, k, lam=3e-4, rho=0.3, iterations=40)
    assert float(psnr(x_hat.clamp(0, 1), x, crop=5)) > float(psnr(y.clamp(0, 1), x, crop=5)) + 2


def test_hyper_laplacian_rejects_bad_alpha():
    y, k, _ = admm_problem()
    with pytest.raises(ValueError, match="alpha must lie in"):
        hyper_laplacian(y, k, alpha=1.5)


def test_hyper_laplacian_rejects_negative_second_order_weight():
    y, k, _ = admm_problem()
    with pytest.raises(ValueError, match="second_order must be ≥ 0"):
        hyper_laplacian(y, k, second_order=-0.5)


def test_second_differences_keep_a_smooth_ramp():
    """First derivatives alone flatten shading into steps; the second-order terms do not."""
    i = torch.linspace(0, 1, 80, dtype=torch.float64)
    scene = (0.2 + 0.6 * (0.7 * i[None, :] + 0.3 * i[:, None]))[None, None]
    k = motion(11, 30, dtype=torch.float64)
    y, x = valid_blur_pair(scene, k, 0.01, torch.Generator().manual_seed(4))
    x_tv = tv_admm(y, k, 1e-3, 1e-2, iterations=60)
    score = {w: float(psnr(hyper_laplacian(y, k, lam=3e-4, second_order=w, x0=x_tv).clamp(0, 1), x, crop=5))
             for w in (0.0, 0.5)}
    assert score[0.5] > score[0.0] + 5


# ----- priors -----------------------------------------------------------------------------
def test_gradient_adjoint_and_symbol():
    x = torch.rand(2, 1, 9, 11, dtype=torch.float64)
    g = torch.rand(2, 1, 2, 9, 11, dtype=torch.float64)
    assert torch.allclose((grad(x) * g).sum(), (x * grad_adjoint(g)).sum())
    DtD = grad_adjoint(grad(x))
    via_fft = torch.fft.irfft2(grad_otf_power((9, 11), dtype=torch.float64) * torch.fft.rfft2(x), s=(9, 11))
    assert torch.allclose(DtD, via_fft)


@pytest.mark.parametrize(
    "forward, adjoint, power, axes",
    [(hessian, hessian_adjoint, hessian_otf_power, 3),
     (grad_and_hessian, grad_and_hessian_adjoint, grad_and_hessian_otf_power, 5)],
)
def test_second_difference_adjoint_and_symbol(forward, adjoint, power, axes):
    x = torch.rand(2, 1, 9, 11, dtype=torch.float64)
    g = torch.rand(2, 1, axes, 9, 11, dtype=torch.float64)
    assert torch.allclose((forward(x) * g).sum(), (x * adjoint(g)).sum())
    via_fft = torch.fft.irfft2(power((9, 11), dtype=torch.float64) * torch.fft.rfft2(x), s=(9, 11))
    assert torch.allclose(adjoint(forward(x)), via_fft)


def test_hessian_of_a_quadratic():
    """Away from the wrap-around, x = i² + 3ij has ∂_vv = 2, ∂_hh = 0 and ∂_hv = 3."""
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    h = hessian((i**2 + 3 * i * j)[None, None].double())[0, 0, :, 1:-2, 1:-2]
    assert torch.allclose(h[0], torch.zeros_like(h[0]))
    assert torch.allclose(h[1], torch.full_like(h[1], 2.0))
    assert torch.allclose(h[2], torch.full_like(h[2], 3.0))


@pytest.mark.parametrize("tau", [0.003, 0.05, 0.3])
def test_isotropic_hyper_laplacian_prox_is_radial(tau):
    """Shrinks each pixel's gradient magnitude by the 1-D prox and keeps its direction."""
    v = torch.randn(1, 1, 2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
    w = prox_hyper_laplacian_isotropic(v, tau)
    norm_v, norm_w = v.pow(2).sum(2).sqrt(), w.pow(2).sum(2).sqrt()
    assert torch.allclose(norm_w, prox_hyper_laplacian(norm_v, tau))
    cross = v[:, :, 0] * w[:, :, 1] - v[:, :, 1] * w[:, :, 0]  # parallel: zero cross product
    assert torch.allclose(cross, torch.zeros_like(cross), atol=1e-12)
    assert ((v * w).sum(2) >= 0).all()


@pytest.mark.parametrize("tau", [0.003, 0.05, 0.3])
def test_proxes_match_brute_force(tau):
    v = torch.linspace(-1, 1, 81, dtype=torch.float64)
    grid = torch.linspace(-1.2, 1.2, 240_001, dtype=torch.float64)
    cost = tau * grid.abs()[None] ** (2 / 3) + 0.5 * (grid[None] - v[:, None]) ** 2
    brute = grid[cost.argmin(1)]
    assert (prox_hyper_laplacian(v, tau, newton_steps=8) - brute).abs().max() < 2e-5
    # TV on a 1-D field: soft threshold
    field = torch.stack([v, torch.zeros_like(v)])[None, None]  # (1, 1, 2, 81)
    soft = torch.sign(v) * (v.abs() - tau).clamp(min=0)
    assert torch.allclose(prox_tv(field, tau)[0, 0, 0], soft)


def test_fft_convolve_agrees_with_blur():
    k = motion(6, 10, dtype=torch.float64)
    x = camera(32)
    assert torch.allclose(fft_convolve(x, psf2otf(k, (32, 32))), Blur(k)(x))


def test_i_divergence_zero_at_match():
    y = torch.rand(1, 1, 5, 5, dtype=torch.float64) + 0.1
    assert float(i_divergence(y, y)) == pytest.approx(0.0, abs=1e-12)


def test_tikhonov_start_is_exact_on_a_constant_scene_and_has_the_scene_shape():
    """A constant scene blurs to the same constant: ȳ is already consistent (A ȳ = y), so the
    Tikhonov correction vanishes and x₀ is that constant on the whole scene grid."""
    from deblur_edu.classical import tikhonov_start

    k = motion(9, 20)
    A = Blur(k, "valid")
    scene = torch.full((2, 1, 40, 40), 0.3)
    x0 = tikhonov_start(A, A(scene))
    assert x0.shape == scene.shape
    assert torch.allclose(x0, scene, atol=1e-5)


# ----- differentiability: every solver has finite, correct gradients -----------------------
def _old_gradient_magnitude(g):
    """The formula before the safe square root (NaN gradient at g = 0), kept to compare values."""
    return (g * g).sum(dim=2, keepdim=True).sqrt()


@pytest.mark.parametrize("solver", ["tv", "hyper-laplacian"])
@pytest.mark.parametrize("boundary", ["valid", "circular"])
def test_tv_and_hyper_laplacian_gradients_are_finite_at_a_constant_image(solver, boundary):
    """A constant image has zero gradient magnitude everywhere: ``sqrt`` at 0 has an infinite
    slope, and from the second iteration on the backward pass was all NaN."""
    y = torch.full((1, 1, 12, 12), 0.5, dtype=torch.float64, requires_grad=True)
    k = gaussian(3, 0.8, dtype=torch.float64).requires_grad_()
    run = tv_admm if solver == "tv" else hyper_laplacian
    run(y, k, iterations=3, boundary=boundary).square().sum().backward()
    assert torch.isfinite(y.grad).all() and torch.isfinite(k.grad).all()


def test_safe_square_root_keeps_every_value_bit_identical(monkeypatch):
    """The double ``where`` changes only the backward pass: the magnitude, and TV and the
    hyper-Laplacian run end to end, equal the plain ``sqrt`` formula bit for bit."""
    from deblur_edu.classical import priors

    g = torch.randn(2, 1, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    g[..., :3, :3] = 0  # flat patches: the case the safe root exists for
    for t in (g, g.double()):
        assert torch.equal(priors.gradient_magnitude(t), _old_gradient_magnitude(t))
    k = motion(7, 30)
    y = Blur(k, "valid")(camera(48, torch.float32))
    y[..., :10, :10] = 0.5  # a constant corner
    new = [tv_admm(y, k, iterations=8, boundary=b) for b in ("valid", "circular")] + [hyper_laplacian(y, k, iterations=8)]
    monkeypatch.setattr(priors, "gradient_magnitude", _old_gradient_magnitude)
    old = [tv_admm(y, k, iterations=8, boundary=b) for b in ("valid", "circular")] + [hyper_laplacian(y, k, iterations=8)]
    assert all(torch.equal(a, b) for a, b in zip(new, old))


def _gradcheck_problem(constant: bool = False, seed: int = 3):
    """A small float64 problem for ``gradcheck``: y (1, 1, 12, 12), a 3×3 kernel, both
    requiring gradients (the kernel's gradient is what blind deblurring needs)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.full((1, 1, 12, 12), 0.5, dtype=torch.float64) if constant else \
        0.2 + 0.6 * torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64)
    return y.requires_grad_(), gaussian(3, 0.8, dtype=torch.float64).requires_grad_()


GRADCHECK_SOLVERS = {
    "inverse": lambda y, k: inverse_filter(y, k, 1e-3),
    "wiener": lambda y, k: wiener(y, k, 1e-2),
    "wiener-padded": lambda y, k: wiener_padded(y, k, 1e-2),
    "richardson-lucy": lambda y, k: richardson_lucy(y, k, iterations=3),
    "tv-valid": lambda y, k: tv_admm(y, k, lam=1e-2, iterations=3, boundary="valid"),
    "tv-circular": lambda y, k: tv_admm(y, k, lam=1e-2, iterations=3, boundary="circular"),
}


@pytest.mark.parametrize("constant", [False, True], ids=["random", "constant"])
@pytest.mark.parametrize("name", list(GRADCHECK_SOLVERS))
def test_classical_solvers_pass_gradcheck(name, constant):
    """Finite differences agree with autograd for y and k (float64, 12×12, a 3×3 kernel).

    The inverse, Wiener and Richardson–Lucy maps are smooth on this domain (positive y, a
    kernel whose |K| stays clear of the inverse filter's threshold). TV's prox is smooth except
    on the spheres ``|v| = τ``, which random inputs miss; at a constant image every prox input
    is 0, inside the dead zone ``|v| < τ`` where the prox is identically 0 — smooth, and the
    point where the NaN gradient was."""
    y, k = _gradcheck_problem(constant)
    assert torch.autograd.gradcheck(GRADCHECK_SOLVERS[name], (y, k))


@pytest.mark.parametrize("constant", [False, True], ids=["random", "constant"])
@pytest.mark.parametrize("boundary", ["valid", "circular"])
def test_hyper_laplacian_passes_gradcheck_away_from_its_thresholds(boundary, constant, monkeypatch):
    """The prox of ``τ|w|^α`` (α < 1) is discontinuous: it jumps from 0 to a non-zero root at a
    threshold of |v|, so at a prox input on the threshold no derivative exists and finite
    differences straddling it see the jump. Everywhere else the solver is smooth, and that is
    what is checkable: every prox input of the run is recorded and must lie at least δ = 1e-4
    from a jump (the prox at |v| ± δ on the same side of it — far more than gradcheck's step
    of 1e-6 moves them), then ``gradcheck`` must pass. At a constant image every input is 0,
    deep in the dead zone."""
    import importlib

    from deblur_edu.classical import priors

    module = importlib.import_module("deblur_edu.classical.hyper_laplacian")  # the package exports the function
    inputs = []
    prox = priors.prox_hyper_laplacian

    def recording(v, tau, alpha=2 / 3, newton_steps=5):
        inputs.append((v.detach().abs().clone(), tau, alpha))
        return prox(v, tau, alpha, newton_steps)

    monkeypatch.setattr(priors, "prox_hyper_laplacian", recording)
    monkeypatch.setattr(module, "prox_hyper_laplacian", recording)
    y, k = _gradcheck_problem(constant, seed=2)  # a seed whose prox inputs all clear δ (most seeds do not)
    run = lambda y, k: hyper_laplacian(y, k, lam=3e-3, iterations=3, boundary=boundary)
    run(y, k)
    delta = 1e-4
    for a, tau, alpha in inputs:
        if tau > 0:
            assert torch.equal(prox(a - delta, tau, alpha) == 0, prox(a + delta, tau, alpha) == 0)
    assert torch.autograd.gradcheck(run, (y, k))
