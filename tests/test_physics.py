"""The forward model: adjoint identities, shapes, noise, agreement with direct convolution."""

import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deblur_edu.kernels import gaussian, motion
from deblur_edu.physics import (
    BOUNDARIES,
    Blur,
    add_noise,
    fast_fft_size,
    pad,
    pad_adjoint,
    psf2otf,
    scene_padding,
)


def random_kernel(h: int, w: int, seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(batch, 1, h, w, generator=g, dtype=torch.float64)
    return k / k.sum(dim=(-2, -1), keepdim=True)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    H=st.integers(9, 20),
    W=st.integers(9, 20),
    boundary=st.sampled_from(BOUNDARIES),
    per_sample=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_adjoint_identity(h, w, H, W, boundary, per_sample, seed):
    """⟨A x, y⟩ = ⟨x, Aᵀ y⟩ for odd, even and non-symmetric kernels in every mode."""
    B = 3
    k = random_kernel(h, w, seed, B if per_sample else 1)
    A = Blur(k, boundary)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(A.input_shape((B, 2, H, W)), generator=g, dtype=torch.float64)
    y = torch.rand(A.output_shape(x.shape), generator=g, dtype=torch.float64)
    lhs = (A(x) * y).sum()
    rhs = (x * A.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("h,w", [(3, 3), (4, 4), (3, 6), (5, 2)])
def test_valid_matches_scipy_convolution(h, w):
    """The valid mode is true (flipped-kernel) convolution, checked against scipy."""
    k = random_kernel(h, w, 0)
    x = torch.rand(1, 1, 20, 17, dtype=torch.float64)
    y = Blur(k, "valid")(x)
    ref = scipy.signal.convolve2d(x[0, 0].numpy(), k[0, 0].numpy(), mode="valid")
    np.testing.assert_allclose(y[0, 0].numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("h,w", [(3, 3), (4, 4), (2, 5)])
def test_circular_matches_wrapped_convolution(h, w):
    """Circular mode = scipy's 'wrap' convolution with the documented centre (h//2, w//2)."""
    k = random_kernel(h, w, 1)
    x = torch.rand(1, 1, 12, 11, dtype=torch.float64)
    y = Blur(k, "circular")(x)
    top, bottom, left, right = scene_padding(h, w)
    xp = np.pad(x[0, 0].numpy(), ((top, bottom), (left, right)), mode="wrap")
    ref = scipy.signal.convolve2d(xp, k[0, 0].numpy(), mode="valid")
    np.testing.assert_allclose(y[0, 0].numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("mode,np_mode", [("replicate", "edge"), ("reflect", "reflect"), ("circular", "wrap")])
def test_pad_matches_numpy_and_adjoint(mode, np_mode):
    x = torch.rand(2, 1, 6, 7, dtype=torch.float64)
    pads = (2, 3, 1, 4)
    p = pad(x, pads, mode)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 3), (1, 4)), mode=np_mode)
    np.testing.assert_allclose(p.numpy(), ref)
    z = torch.rand_like(p)
    assert torch.allclose((p * z).sum(), (x * pad_adjoint(z, pads, mode)).sum())


def test_delta_kernel_is_identity_even_size():
    """A 1 at the documented centre of an even kernel leaves the image unchanged."""
    k = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    k[..., 2, 2] = 1
    x = torch.rand(1, 1, 10, 10, dtype=torch.float64)
    for boundary in ("circular", "replicate", "reflect"):
        assert torch.allclose(Blur(k, boundary)(x), x)


def test_per_sample_kernels_equal_separate_calls():
    k = random_kernel(5, 3, 2, batch=3)
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    y = Blur(k, "valid")(x)
    for i in range(3):
        assert torch.allclose(y[i : i + 1], Blur(k[i : i + 1], "valid")(x[i : i + 1]))


def test_psf2otf_dc_gain_and_product():
    k = motion(7, 30, dtype=torch.float64)
    K = psf2otf(k, (16, 16))
    assert torch.isclose(K[0, 0, 0, 0].real, torch.tensor(1.0, dtype=torch.float64))
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    assert torch.allclose(torch.fft.irfft2(K * torch.fft.rfft2(x), s=(16, 16)), Blur(k, "circular")(x))


def test_noise_is_reproducible_and_device_independent():
    y = torch.zeros(2, 1, 8, 8)
    a = add_noise(y, 0.1, torch.Generator().manual_seed(3))
    b = add_noise(y, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert 0.05 < float(a.std()) < 0.15
    assert torch.allclose(add_noise(y.double(), 0.1, torch.Generator().manual_seed(3)).float(), a)


def test_blur_is_differentiable():
    k = gaussian(5, 1.0, dtype=torch.float64)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: Blur(k, "valid")(t), (x,))


def test_fast_fft_size():
    assert fast_fft_size(256) == 256
    assert fast_fft_size(283) == 288
    assert fast_fft_size(7) == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_matches_cpu():
    k = random_kernel(7, 6, 4).float()
    x = torch.rand(2, 1, 40, 40)
    for boundary in BOUNDARIES:
        A = Blur(k, boundary)
        xc = torch.rand(A.input_shape(x.shape))
        assert torch.allclose(A(xc.cuda()).cpu(), A(xc), atol=1e-5)
        assert torch.allclose(A.adjoint(A(xc).cuda()).cpu(), A.adjoint(A(xc)), atol=1e-5)


def _half_precision_calls():
    """Every library function that runs FFTs on images, as ``name → f(y)`` (y: (1, 1, 24, 24))."""
    from deblur_edu import classical
    from deblur_edu.classical import tikhonov_inverse
    from deblur_edu.learned.reversible import multi_decoder_loss

    k = gaussian(5, 1.0)
    calls = {f"Blur-{b}": (lambda y, b=b: Blur(k, b)(y)) for b in ("circular", "replicate", "reflect")}
    calls["Blur-valid-adjoint"] = lambda y: Blur(k, "valid").adjoint(y)
    calls["psf2otf"] = lambda y: psf2otf(y[0, 0, :5, :5], y.shape[-2:])  # a "kernel" of the same values in both dtypes
    calls["tikhonov_inverse"] = lambda y: tikhonov_inverse(psf2otf(k, (24, 24)), 0.01, (24, 24))(y)
    calls["multi_decoder_loss"] = lambda y: multi_decoder_loss([y.flip(-1)], y)
    calls["inverse_filter"] = lambda y: classical.inverse_filter(y, k)
    calls["wiener"] = lambda y: classical.wiener(y, k)
    calls["wiener_padded"] = lambda y: classical.wiener_padded(y, k)
    calls["edgetaper"] = lambda y: classical.edgetaper(y, k)
    calls["richardson_lucy"] = lambda y: classical.richardson_lucy(y, k, iterations=5)
    calls["tv_admm-valid"] = lambda y: classical.tv_admm(y, k, iterations=5)
    calls["tv_admm-circular"] = lambda y: classical.tv_admm(y, k, iterations=5, boundary="circular")
    calls["hyper_laplacian"] = lambda y: classical.hyper_laplacian(y, k, iterations=5)
    return calls


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(_half_precision_calls()))
def test_half_precision_images_are_transformed_in_float32_and_returned_in_their_dtype(name, dtype):
    """Mixed precision hands the library float16/bfloat16 images, which torch's FFTs refuse
    (bfloat16 always, float16 on the CPU). The FFT parts run in float32, so the result equals
    the float32 computation on the same values up to rounding the output to the input's dtype."""
    f = _half_precision_calls()[name]
    y = Blur(gaussian(5, 1.0), "valid")(torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))).to(dtype)
    out, reference = f(y), f(y.float())
    if out.is_complex():  # the OTF: float32's complex type
        assert out.dtype == torch.complex64 and torch.equal(out, reference)
        return
    assert out.dtype == (torch.float32 if out.dim() == 0 else dtype)  # a loss may be float32, an image is not
    assert float((out.float() - reference).abs().max()) <= 2 * torch.finfo(dtype).eps * float(reference.abs().max())
