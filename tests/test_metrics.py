"""PSNR and SSIM: known values, agreement with scikit-image, differentiability."""

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deblur_edu.metrics import psnr, ssim


def pair(seed=0, shape=(3, 1, 48, 40)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    x_hat = (x + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x_hat, x


def test_psnr_matches_skimage():
    x_hat, x = pair()
    ours = psnr(x_hat, x)
    for i in range(3):
        ref = peak_signal_noise_ratio(x[i, 0].numpy(), x_hat[i, 0].numpy(), data_range=1)
        assert abs(float(ours[i]) - ref) < 1e-9


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    x_hat, x = pair(1, (2, channels, 50, 45))
    ours = ssim(x_hat, x)
    for i in range(2):
        a, b = x_hat[i].permute(1, 2, 0).numpy(), x[i].permute(1, 2, 0).numpy()
        ref = structural_similarity(a, b, data_range=1, channel_axis=2)
        assert abs(float(ours[i]) - ref) < 1e-3


def test_crop_ignores_the_border():
    x = torch.zeros(1, 1, 20, 20)
    x_hat = x.clone()
    x_hat[..., :2, :] = 1
    assert torch.isinf(psnr(x_hat, x, crop=2)).all()
    assert float(ssim(x_hat, x, crop=2)) == pytest.approx(1.0)


def test_ssim_gradcheck():
    x_hat, x = pair(2, (1, 1, 12, 12))
    x_hat.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssim(t, x), (x_hat,))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="same"):
        psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


@pytest.mark.parametrize("win_size", [1, 0, -3, 4, 2.0])
def test_ssim_refuses_a_window_that_is_not_odd_and_at_least_3(win_size):
    """win_size=1 divided by N − 1 = 0 (ZeroDivisionError)."""
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="win_size must be an odd integer ≥ 3"):
        ssim(x, x, win_size=win_size)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_0_255_data_with_the_default_data_range_is_refused(metric):
    """0–255 images scored as if in [0, 1] gave about 0 dB instead of an error; with
    data_range=255 they are scored correctly."""
    x_hat, x = pair()
    with pytest.raises(ValueError, match="values up to 25[0-9].* data_range is 1"):
        metric(255 * x_hat, 255 * x)
    assert torch.allclose(metric(255 * x_hat, 255 * x, data_range=255), metric(x_hat, x))


@pytest.mark.parametrize("data_range", [0, -1, float("nan"), float("inf")])
def test_data_range_must_be_positive_and_finite(data_range):
    """data_range=0 gave −inf dB and data_range=−1 a plausible 20 dB."""
    x = torch.rand(1, 1, 16, 16)
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match="data_range is the images' value range"):
            metric(x, x, data_range=data_range)
