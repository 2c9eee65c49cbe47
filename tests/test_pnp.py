"""Plug-and-play HQS: the data step solves its linear system, an oracle prior recovers the truth,
the schedule is DPIR's, and conjugate gradients solve SPD systems (batched, differentiable)."""

import json
import shutil

import pytest
import torch

from deblur_edu.bench.methods import DEFAULTS_FILE, pnp_schedule
from deblur_edu.classical.tv_admm import scene_pads_fast
from deblur_edu.experiments.ch2_pnp_schedule import write_choice
from deblur_edu.learned.fixed_point import preconditioned_cg
from deblur_edu.kernels import camera_shake
from deblur_edu.learned.pnp import NOISE_FLOOR, dpir_schedule, orient, pnp_hqs, unorient
from deblur_edu.physics import Blur, crop


def spd(n: int, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, n, n, generator=g, dtype=torch.float64)
    return a @ a.transpose(1, 2) + 0.1 * torch.eye(n, dtype=torch.float64)


def test_preconditioned_cg_solves_a_batch_of_spd_systems():
    M = spd(12, 3, 0)
    b = torch.randn(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    apply = lambda v: (M @ v[..., None])[..., 0]  # noqa: E731
    jacobi = torch.diagonal(M, dim1=1, dim2=2)
    x = preconditioned_cg(apply, b, torch.zeros_like(b), lambda r: r / jacobi, 12)  # n steps: exact
    torch.testing.assert_close(x, torch.linalg.solve(M, b), atol=1e-8, rtol=1e-8)


def test_preconditioned_cg_is_differentiable():
    M = spd(5, 1, 2)
    b = torch.randn(1, 5, dtype=torch.float64, requires_grad=True)
    apply = lambda v: (M @ v[..., None])[..., 0]  # noqa: E731
    assert torch.autograd.gradcheck(lambda b_: preconditioned_cg(apply, b_, torch.zeros_like(b_), lambda r: r, 5), (b,))


def test_dpir_schedule_runs_geometrically_from_the_start_to_the_noise_level():
    s = dpir_schedule(0.03, 8)
    assert s[0] == pytest.approx(49 / 255) and s[-1] == pytest.approx(0.03)
    ratios = [a / b for a, b in zip(s, s[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert dpir_schedule(0.0, 3)[-1] == NOISE_FLOOR


def problem(seed: int = 0, size: int = 43, sigma: float = 0.0):
    """A valid-blur problem whose scene has exactly the size pnp_hqs's scene grid has."""
    k = camera_shake(9, torch.Generator().manual_seed(seed))
    pads = scene_pads_fast((size, size), (9, 9))
    side = size + pads[0] + pads[1]
    x = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    y = Blur(k, "valid")(x[..., : size + 8, : size + 8])
    y = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    return x, y, k.double(), pads


def test_an_oracle_prior_gives_the_truth_to_the_data_step():
    """With ``z`` the true scene and y = A x noise-free, ``(AᵀA + αI) x = Aᵀy + α z`` has the truth
    as its solution: every data step after the first must land on it (CG converged)."""
    x, y, k, pads = problem()
    assert x.shape[-1] > y.shape[-1] + 8  # the fast-FFT grid has pixels y never sees: their truth is any value
    truth = x
    seen = []

    def oracle(v, sigma_k):
        seen.append(v)
        return truth

    out = pnp_hqs(y, k, 0.0, oracle, iterations=4, cg_iterations=30, lam=100.0)  # well conditioned: α ≥ 0.01
    assert torch.equal(out, crop(truth, pads))
    for v in seen[1:]:
        torch.testing.assert_close(v, truth, atol=1e-6, rtol=0)


def test_the_data_step_is_regularised_least_squares():
    """With the identity as 'denoiser' the data step's x solves (AᵀA + αI) x = Aᵀy + αz: its
    normal-equation residual is small — the border-aware model, not a circular one."""
    x, y, k, pads = problem(sigma=0.01)
    seen = []
    out = pnp_hqs(y, k, 0.01, lambda v, s: seen.append(v) or v, iterations=1, cg_iterations=80, lam=0.2)
    alpha = 0.2  # one iteration: σ_k = σ, α = λσ²/σ_k² = λ
    v = seen[0]
    mask = torch.zeros_like(v)
    mask[..., pads[0] : v.shape[-2] - pads[1], pads[2] : v.shape[-1] - pads[3]] = 1
    from deblur_edu.physics import psf2otf

    K = psf2otf(k, v.shape[-2:])
    A = lambda u: mask * torch.fft.irfft2(K * torch.fft.rfft2(u), s=u.shape[-2:])  # noqa: E731
    At = lambda r: torch.fft.irfft2(K.conj() * torch.fft.rfft2(mask * r), s=r.shape[-2:])  # noqa: E731
    from deblur_edu.physics import pad, zero_pad

    z0 = pad(y, pads, "replicate")
    residual = At(A(v)) + alpha * v - At(zero_pad(y, pads)) - alpha * z0
    assert float(residual.abs().max()) < 1e-6
    assert out.shape == y.shape


def test_pnp_refuses_bad_settings():
    x, y, k, _ = problem()
    with pytest.raises(ValueError, match="lam"):
        pnp_hqs(y, k, 0.01, lambda v, s: v, lam=0)
    with pytest.raises(ValueError, match="iterations"):
        pnp_hqs(y, k, 0.01, lambda v, s: v, iterations=0)
    with pytest.raises(ValueError, match="sigma"):
        pnp_hqs(y, k, -0.01, lambda v, s: v)


def test_orient_and_unorient_are_the_eight_symmetries_of_the_square():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    turned = [orient(x, i) for i in range(8)]
    assert all(torch.equal(unorient(t, i), x) for i, t in enumerate(turned))
    assert len({tuple(t.flatten().tolist()) + tuple(t.shape) for t in turned}) == 8  # eight different images


def test_x8_mode_hands_the_denoiser_a_clamped_turned_estimate_and_turns_it_back():
    """An equivariant denoiser (a symmetric 3×3 mean) gives the same result turned or not; the
    denoiser sees iteration i's estimate turned by i mod 8 (transposed for i = 4..7) and in [0, 1]."""
    x, y, k, pads = problem(sigma=0.02)
    y = y[..., :-5]  # narrower than tall: a transposed estimate is wider than tall
    mean3 = lambda v, s: torch.nn.functional.avg_pool2d(v, 3, 1, 1)  # noqa: E731
    plain = pnp_hqs(y, k, 0.02, mean3, iterations=8, lam=0.2, clamp=True)
    seen = []
    turned = pnp_hqs(y, k, 0.02, lambda v, s: seen.append(v) or mean3(v, s), iterations=8, lam=0.2,
                     orientations=True, clamp=True)
    torch.testing.assert_close(turned, plain, atol=1e-9, rtol=0)
    assert [v.shape[-1] > v.shape[-2] for v in seen] == [False] * 4 + [True] * 4
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in seen)
    shift = lambda v, s: torch.roll(v, 1, -1)  # noqa: E731  (not equivariant: turning changes the answer)
    assert not torch.allclose(pnp_hqs(y, k, 0.02, shift, iterations=4, lam=0.2, orientations=True),
                              pnp_hqs(y, k, 0.02, shift, iterations=4, lam=0.2))


def test_the_schedule_sweep_writes_the_best_row_at_each_sigma_with_its_lambda(tmp_path):
    f = tmp_path / "defaults.json"
    shutil.copy(DEFAULTS_FILE, f)
    before = json.loads(f.read_text())
    rows = [{"iterations": 12, "sigma_start": 0.19, "variant": "plain", "lam": {"0.01": 0.4, "0.03": 0.2}, "mean": 28.1},
            {"iterations": 24, "sigma_start": 0.19, "variant": "x8", "lam": {"0.01": 0.2, "0.03": 0.4}, "mean": 28.3}]
    rows[0]["psnr"], rows[1]["psnr"] = {"0.01": 30.0, "0.03": 26.5}, {"0.01": 30.2, "0.03": 26.4}
    chosen = write_choice(rows, str(f))
    after = json.loads(f.read_text())
    assert chosen == after["schedules"]["pnp"] == [  # per σ, the row best at that σ
        {"iterations": 24, "sigma_start": 0.19, "orientations": True, "clamp": True},
        {"iterations": 12, "sigma_start": 0.19, "orientations": False, "clamp": False}]
    assert after["methods"]["pnp"] == {"lam": [0.2, 0.2]}
    assert [pnp_schedule(after, s)["iterations"] for s in (0.005, 0.01, 0.016, 0.018, 0.03, 0.1)] == [24, 24, 24, 12, 12, 12]
    assert {k: v for k, v in after["methods"].items() if k != "pnp"} == {
        k: v for k, v in before["methods"].items() if k != "pnp"}
