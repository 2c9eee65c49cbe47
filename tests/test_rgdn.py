"""RGDN: shapes, channels, ablations, early stop, gradients, clear errors."""

import pytest
import torch

from deblur_edu.kernels import gaussian, motion
from deblur_edu.learned import RGDN


def test_gray_and_rgb_shapes_and_every_step():
    k = motion(7, 20)
    for channels in (1, 3):
        net = RGDN(channels=channels, features=8, depth=3, steps=4)
        y = torch.rand(2, channels, 40, 36)
        assert net(y, k).shape == y.shape
        outs = net(y, k, steps=6, return_all=True)
        assert len(outs) == 6 and all(o.shape == y.shape for o in outs)


def test_without_its_networks_a_step_is_one_plain_gradient_step():
    """H → identity, R → 0, D → the scalar step 1: x₁ = x₀ − Aᵀ(A x₀ − y) from the replicate-padded y."""
    from deblur_edu.physics import Blur, crop, pad

    torch.manual_seed(0)
    net = RGDN(features=4, depth=2, steps=1, use_h=False, use_r=False, use_d=False).double()
    y, k = torch.rand(2, 1, 24, 24, dtype=torch.float64), gaussian(5, 1.0, dtype=torch.float64)
    A = Blur(k, "valid")
    x0 = pad(y, A.pads, "replicate")
    expected = crop(x0 - A.adjoint(A(x0) - y), A.pads)
    torch.testing.assert_close(net(y, k), expected, atol=1e-12, rtol=0)


def test_per_sample_kernels_of_any_size():
    net = RGDN(features=8, depth=3, steps=2)
    k = torch.stack([gaussian(9, 1.0)[0], gaussian(9, 2.0)[0]])
    assert net(torch.rand(2, 1, 32, 32), k).shape == (2, 1, 32, 32)
    assert net(torch.rand(1, 1, 32, 32), gaussian(4, 1.0)).shape == (1, 1, 32, 32)  # even kernel


@pytest.mark.parametrize("switches", [dict(use_h=False), dict(use_r=False), dict(use_d=False)])
def test_ablations_run_and_use_every_parameter(switches):
    net = RGDN(features=8, depth=3, steps=2, **switches)
    loss = net(torch.rand(1, 1, 24, 24), gaussian(5, 1.0)).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_early_stop_on_relative_change():
    net = RGDN(features=8, depth=3)
    for p in net.D.parameters():
        torch.nn.init.zeros_(p)  # D ≡ 0: the first update changes nothing
    outs = net(torch.rand(1, 1, 24, 24), gaussian(5, 1.0), steps=10, return_all=True, tol=1e-6)
    assert len(outs) == 1


def test_gradients_reach_the_input():
    net = RGDN(features=8, depth=3, steps=2).double()
    y = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    k = gaussian(3, 0.8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: net(t, k), (y,), atol=1e-6)


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match="built for 1 channel"):
        RGDN(features=8, depth=3)(torch.rand(1, 3, 24, 24), gaussian(5, 1.0))


def test_kernel_larger_than_image_is_a_clear_error():
    with pytest.raises(ValueError, match="larger than the"):
        RGDN(features=8, depth=3)(torch.rand(1, 1, 8, 8), gaussian(11, 2.0))


def test_shipped_checkpoint_loads_and_deblurs():
    from deblur_edu.zoo import WEIGHTS_DIR, pretrained
    from deblur_edu.bench.methods import get_method

    meta = __import__("json").loads((WEIGHTS_DIR / "rgdn-cpu.json").read_text())
    for key in ("config", "data_recipe", "commit", "training", "sha256", "metrics"):
        assert meta[key], key
    assert (WEIGHTS_DIR / "rgdn-cpu.pt").stat().st_size < 12_000_000  # small: the fine-tuned denoiser's 2.5 M float32 weights and H, D
    from deblur_edu.train import load_config
    preset = load_config("rgdn", "denoiser-cpu")  # the shipped recipe is the preset make rgdn-checkpoint names
    assert meta["config"]["model"] == preset["model"] and meta["config"]["data"] == preset["data"]
    assert meta["config"]["train"] == preset["train"]
    model = pretrained("rgdn-cpu")
    assert model.channels == 1
    y = torch.rand(1, 1, 40, 40)
    assert get_method("rgdn")(y, motion(7, 10), 0.01, {}).shape == y.shape


def test_shipped_training_log_belongs_to_the_shipped_checkpoint():
    """The log chapter 3 plots is the run that made the weights: same length, validation curve present."""
    import json
    from pathlib import Path

    from deblur_edu.zoo import WEIGHTS_DIR

    meta = json.loads((WEIGHTS_DIR / "rgdn-cpu.json").read_text())
    log_file = Path(__file__).resolve().parent.parent / "benchmarks" / "rgdn-cpu-log.jsonl"
    rows = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert rows[-1]["step"] == meta["training"]["steps"] == meta["config"]["train"]["steps"]
    val = [r for r in rows if "val_psnr" in r]
    assert len(val) == meta["config"]["train"]["steps"] // meta["config"]["train"]["val_every"]
    assert all(r["train_seconds"] <= r["seconds"] for r in val)


def test_preconditioner_inverts_the_regularised_normal_operator():
    """P = (KᵀK + λDᵀD)⁻¹: applying KᵀK + λDᵀD (circular, by FFT) to P g gives back g."""
    from deblur_edu.classical.priors import grad, grad_adjoint
    from deblur_edu.physics import Blur

    net = RGDN(features=4, depth=2, precondition=True, balance=0.05).double()
    k = motion(7, 30, dtype=torch.float64)
    A = Blur(k, "valid")
    g = torch.randn(2, 1, 30, 34, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        Pg = net.preconditioner(A, g)(g)
    C = Blur(k, "circular")
    lam = float(net.log_balance.detach().exp())  # 0.05, up to its float32 initialisation
    back = C.adjoint(C(Pg)) + lam * grad_adjoint(grad(Pg))
    assert torch.allclose(back, g, atol=1e-8)
    # symmetric positive definite: a descent direction stays one
    assert float((g * Pg).sum()) > 0


def test_preconditioned_model_learns_its_balance():
    net = RGDN(features=4, depth=2, steps=2, precondition=True)
    net(torch.rand(1, 1, 24, 24), gaussian(5, 1.0)).sum().backward()
    assert net.log_balance.grad is not None and float(net.log_balance.grad.abs()) > 0


def test_dilated_prior_widens_the_receptive_field():
    from deblur_edu.learned.rgdn import dilations, receptive_field, small_cnn

    assert dilations(5, True) == [1, 2, 4, 2, 1] and dilations(4, False) == [1, 1, 1, 1]
    net = small_cnn(1, 4, 5, dilated=True)
    for p in net.parameters():  # positive weights and biases: every ReLU passes, the view is the full field
        torch.nn.init.constant_(p, 0.1)
    assert receptive_field(net, size=41) == 1 + 2 * sum(dilations(5, True))


def test_psnr_per_step_returns_one_value_per_step():
    from deblur_edu.bench.protocol import load_benchmark
    from deblur_edu.experiments.ch3_iterations import psnr_per_step

    bench = load_benchmark("test", crop=48, fallback=True)
    bench.kernels = bench.kernels[:1]
    torch.manual_seed(0)
    curve = psnr_per_step(RGDN(features=4, depth=2), bench, 0.01, max_steps=3)
    assert len(curve) == 3 and all(10 < v < 60 for v in curve)
    # the model is told σ: the denoiser prior, which requires it, runs too
    net = RGDN(features=4, depth=2, precondition=True, prior="denoiser", prior_width=4, prior_levels=1)
    assert len(psnr_per_step(net, bench, 0.01, max_steps=2)) == 2


def test_unet_prior_is_the_residual_branch_at_any_size():
    """R(x) = U(x): the U-Net's output minus its input, also at sizes it must pad."""
    from deblur_edu.learned.rgdn import UNetPrior

    torch.manual_seed(0)
    R = UNetPrior(1, width=4, levels=2)
    x = torch.rand(2, 1, 29, 31)
    assert R(x).shape == x.shape
    assert torch.allclose(R(x), super(UNetPrior, R).forward(x) - x, atol=1e-6)


def test_unet_prior_sees_wider_than_a_long_blur_and_the_plain_prior_does_not():
    from deblur_edu.learned.rgdn import receptive_field

    torch.manual_seed(0)
    plain = RGDN(features=4, depth=4).R
    unet = RGDN(features=4, depth=3, prior="unet", prior_levels=3).R
    assert receptive_field(plain) == 9  # 1 + 2·depth
    assert receptive_field(unet) > 2 * 27  # wider than twice Levin's largest kernel


def test_unet_prior_model_uses_every_parameter_and_has_exact_gradients():
    net = RGDN(features=4, depth=2, steps=2, precondition=True, prior="unet", prior_levels=2)
    net(torch.rand(1, 1, 24, 28), gaussian(5, 1.0)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())  # DDP needs every parameter used
    net = net.double()
    y = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    k = gaussian(3, 0.8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: net(t, k), (y,), atol=1e-6)


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prior 'transformer'; choose one of"):
        RGDN(prior="transformer")
    with pytest.raises(ValueError, match="dilated_prior dilates the plain prior"):
        RGDN(prior="unet", dilated_prior=True)


# ----- the denoiser prior (issue 23): RED's step towards a pretrained Gaussian denoiser -----------------
def denoiser_rgdn(**kw):
    """A small denoiser-prior RGDN whose denoiser is not the identity (a fresh U-Net's last layer is zero)."""
    torch.manual_seed(0)
    net = RGDN(features=4, depth=2, steps=2, precondition=True, prior="denoiser", prior_width=4, prior_levels=1,
               **kw).double()
    torch.nn.init.normal_(net.denoiser.unet.head.weight, std=0.1)
    return net


def test_denoiser_prior_starts_as_the_preconditioned_red_step():
    """Untrained, one step is x₁ = x₀ − η(P∇f(x₀) − (D_θ(x₀, s) − x₀)), s = aσ + b: H and D start as
    the identity and −η."""
    from deblur_edu.learned.denoiser import NOISE_FLOOR
    from deblur_edu.physics import Blur, crop, pad

    net = denoiser_rgdn(step=0.3, level_slope=2.0, level_floor=0.02)
    y, k = torch.rand(2, 1, 20, 20, dtype=torch.float64), gaussian(5, 1.0, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.0005], dtype=torch.float64)
    A = Blur(k, "valid")
    x0 = pad(y, A.pads, "replicate")
    s = (2.0 * sigma.clamp(min=NOISE_FLOOR) + 0.02).view(2, 1, 1, 1)
    red = net.denoiser.denoise(x0, s.expand(-1, 1, *x0.shape[-2:])) - x0
    grad = net.preconditioner(A, x0, sigma.view(2, 1, 1, 1))(A.adjoint(A(x0) - y))
    expected = crop(x0 - 0.3 * (grad - red), A.pads)
    # (η, a, b are float32 parameters converted to double: their logs round at 1e-8)
    torch.testing.assert_close(net(y, k, sigma, steps=1), expected, atol=1e-7, rtol=0)


def test_denoiser_prior_uses_sigma_and_asks_for_it():
    net = denoiser_rgdn()
    y, k = torch.rand(1, 1, 16, 16, dtype=torch.float64), gaussian(3, 1.0, dtype=torch.float64)
    assert net.uses_sigma and not RGDN(features=4, depth=2).uses_sigma
    with pytest.raises(ValueError, match=r"net\(y, k, sigma\)"):
        net(y, k)
    assert not torch.equal(net(y, k, 0.01), net(y, k, 0.05))  # σ changes the level s(σ)


def test_denoiser_prior_gradients_reach_every_parameter():
    net = denoiser_rgdn()
    y, k = torch.rand(2, 1, 16, 16, dtype=torch.float64), gaussian(3, 1.0, dtype=torch.float64)
    for o in net(y, k, 0.02, return_all=True):
        o.square().mean().backward(retain_graph=True)
    assert all(p.grad is not None for p in net.parameters())  # every parameter is used (DDP needs it)
    zero = [n for n, p in net.named_parameters() if not p.grad.abs().sum() > 0]
    # the zeroed last layers of h and d block gradients to the layers before them at the start (and
    # only there): their own weights do get gradients
    assert all(".net.0." in n for n in zero), zero


@pytest.mark.parametrize("kw, message", [
    (dict(use_d=False), "keep use_h, use_r and use_d"),
    (dict(step=0.0), "step must be positive"),
    (dict(level_floor=-1.0), "level_floor must be positive"),
    (dict(dilated_prior=True), "dilated_prior dilates the plain prior"),
])
def test_denoiser_prior_refuses_bad_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        RGDN(features=4, depth=2, prior="denoiser", **kw)


def test_denoiser_prior_takes_a_mixed_precision_step():
    """rgdn-denoiser-full trains under float16 autocast on a GPU; the same op lists run on the CPU here."""
    torch.manual_seed(0)
    net = RGDN(features=4, depth=2, steps=2, precondition=True, prior="denoiser", prior_width=4, prior_levels=1)
    y, k = torch.rand(2, 1, 24, 24), gaussian(5, 1.0)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = sum(o.float().square().mean() for o in net(y, k, 0.02, return_all=True))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_denoiser_prior_update_without_its_level_is_a_clear_error():
    net = denoiser_rgdn()
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs its level"):
        net.update(x, x)


def test_the_other_priors_ignore_the_denoiser_settings():
    """level_slope, level_floor and step belong to the denoiser prior: the others neither check nor use them."""
    torch.manual_seed(0)
    a = RGDN(features=4, depth=2, step=0.0)
    torch.manual_seed(0)
    b = RGDN(features=4, depth=2)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_the_sequential_order_denoises_after_the_data_step():
    """order="sequential", untrained: x₁ = D_θ(x₀ − η P∇f(x₀), s) — plug-and-play's order."""
    from deblur_edu.physics import Blur, crop, pad

    net = denoiser_rgdn(step=1.0, order="sequential")
    y, k = torch.rand(2, 1, 20, 20, dtype=torch.float64), gaussian(5, 1.0, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.03], dtype=torch.float64).view(2, 1, 1, 1)
    A = Blur(k, "valid")
    x0 = pad(y, A.pads, "replicate")
    u = x0 - net.preconditioner(A, x0, sigma)(A.adjoint(A(x0) - y))
    s = net.level(sigma)
    expected = crop(net.denoiser.denoise(u, s.expand(-1, 1, *u.shape[-2:])), A.pads)
    torch.testing.assert_close(net(y, k, sigma.flatten(), steps=1), expected, atol=1e-7, rtol=0)


def test_the_denoiser_prior_regularises_the_data_step_more_when_sigma_is_larger():
    """β = λ·max(σ, σ_min): the preconditioned gradient of a noisier image is smoother (smaller)."""
    from deblur_edu.physics import Blur

    net = denoiser_rgdn()
    A = Blur(gaussian(5, 1.0, dtype=torch.float64), "valid")
    g = torch.randn(1, 1, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    low, high = (net.preconditioner(A, g, torch.full((1, 1, 1, 1), s, dtype=torch.float64))(g) for s in (0.01, 0.05))
    assert high.norm() < low.norm()
    with pytest.raises(ValueError, match="unknown order 'backwards'"):
        RGDN(features=4, depth=2, order="backwards")
