"""Every bad input named in the foundation issue gets a clear error — one test per case."""

import pytest
import torch

from deblur_edu.classical import richardson_lucy, tv_admm, wiener, wiener_padded
from deblur_edu.data import data_dir, fetch
from deblur_edu.kernels import gaussian
from deblur_edu.physics import Blur, add_noise
from deblur_edu.zoo.registry import MODELS
from deblur_edu.train import load_config

X = torch.rand(2, 1, 32, 32)
K = gaussian(5, 1.0)


def test_kernel_larger_than_image():
    with pytest.raises(ValueError, match="larger than the"):
        wiener(torch.rand(1, 1, 8, 8), gaussian(11, 2.0))


def test_negative_kernel():
    k = K.clone()
    k[..., 0, 0] = -0.01
    with pytest.raises(ValueError, match="negative entries"):
        Blur(k)


def test_non_finite_kernel():
    k = K.clone()
    k[..., 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        Blur(k)


def test_kernel_not_summing_to_one_is_refused_not_normalised():
    with pytest.raises(ValueError, match="must sum to 1.*refused, not normalised"):
        Blur(K * 2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_image(bad):
    y = X.clone()
    y[0, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="NaN/Inf"):
        wiener(y, K)


def test_integer_dtype():
    with pytest.raises(TypeError, match="integer dtype.*/ 255"):
        wiener((X * 255).to(torch.uint8), K)


def test_complex_dtype():
    with pytest.raises(TypeError, match="complex dtype"):
        wiener(X.to(torch.complex64), K)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        wiener(X.numpy(), K)


@pytest.mark.parametrize("shape", [(32, 32), (1, 32, 32), (1, 1, 1, 32, 32)])
def test_wrong_number_of_dimensions(shape):
    with pytest.raises(ValueError, match=r"4 dimensions \(B, C, H, W\)"):
        wiener(torch.rand(shape), K)


def test_kernel_wrong_shape():
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        Blur(torch.ones(1, 3, 5, 5) / 75)


def test_kernel_image_batch_mismatch():
    with pytest.raises(ValueError, match="kernel batch 3 does not match"):
        wiener(X, K.expand(3, 1, 5, 5).contiguous())


def test_negative_sigma():
    with pytest.raises(ValueError, match="sigma .* must be ≥ 0"):
        add_noise(X, -0.1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: wiener(X, K, balance=0.0),
        lambda: wiener(X, K, balance=-1e-3),
        lambda: tv_admm(X, K, lam=0.0),
        lambda: tv_admm(X, K, lam=1e-3, rho=-1.0),
        lambda: tv_admm(X, K, lam=1e-3, rho_data=float("nan")),
    ],
)
def test_non_positive_regularisation_or_step(call):
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        call()


def test_non_positive_iterations():
    with pytest.raises(ValueError, match="iterations must be ≥ 1"):
        richardson_lucy(X, K, iterations=0)


def test_unknown_boundary_mode():
    with pytest.raises(ValueError, match="unknown boundary mode 'wrap'"):
        Blur(K, boundary="wrap")


def test_unknown_admm_boundary():
    with pytest.raises(ValueError, match="unknown boundary 'replicate' for ADMM"):
        tv_admm(X, K, boundary="replicate")


def test_looks_like_0_255_data():
    with pytest.raises(ValueError, match="divide by 255"):
        wiener(X * 255, K)


def test_a_large_negative_value_is_named_as_the_lowest_not_the_largest():
    """The check looks at magnitudes: a -300 used to be reported as "values up to 300.0"."""
    with pytest.raises(ValueError, match="values as low as -300.0"):
        wiener(X - 300, K)
    with pytest.raises(ValueError, match="values up to 255.0"):
        wiener(X * 0 + 255, K)


def test_noisy_values_outside_0_1_are_accepted():
    y = X * 1.2 - 0.1  # a noisy observation leaves [0, 1]
    assert wiener(y, K).shape == y.shape


def test_missing_data_directory_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="DEBLUR_EDU_DATA.*python -m deblur_edu.data download"):
        data_dir()


def test_missing_data_file_names_the_download_command(monkeypatch, tmp_path):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="set12/09.png.*python -m deblur_edu.data download"):
        fetch("set12/09.png")


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_float64_input_to_a_learned_model_is_a_type_error_that_names_the_fix(model_name):
    """Not "Input type (double) and bias type (float)" from inside the first convolution."""
    torch.manual_seed(0)
    model = MODELS[model_name].build(load_config(model_name, "tiny")["model"])
    y = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"weights are torch.float32 but y is torch.float64.*y.to\(torch.float32\)"):
        model(y, K.double())


@pytest.mark.parametrize("kernel", [gaussian(5, 1.0), gaussian(3, 0.8)], ids=["5x5", "3x3"])
def test_a_channels_last_image_is_named_as_such(kernel):
    """(1, H, W, 3) from numpy/PIL: with a 5×5 kernel the old message was "kernel larger than
    the y (32×3)"; with a 3×3 kernel it even ran, deblurring along the wrong axes."""
    rgb = torch.rand(1, 32, 32, 3)
    for call in (lambda: wiener(rgb, kernel), lambda: Blur(kernel)(rgb)):
        with pytest.raises(ValueError, match=r"looks channels-last.*permute\(0, 3, 1, 2\)"):
            call()


@pytest.mark.parametrize("shape", [(1, 1, 1, 16), (1, 1, 16, 1), (1, 1, 1, 1)])
def test_images_too_small_for_the_finite_differences_are_refused_clearly(shape):
    """1×N, N×1 and 1×1 images failed with a broadcasting error deep in the regulariser."""
    y, k = torch.rand(shape), torch.ones(1, 1)
    for call in (lambda: wiener(y, k), lambda: tv_admm(y, k, iterations=2),
                 lambda: tv_admm(y, k, iterations=2, boundary="circular")):
        with pytest.raises(ValueError, match=r"too small for this regulariser.*at least 2×2 pixels"):
            call()
    assert wiener(y, k, regulariser="identity").shape == shape  # no differences: nothing to refuse


@pytest.mark.parametrize("margin", [-1, -10, 2.5])
def test_wiener_padded_refuses_a_margin_that_is_not_a_pixel_count(margin):
    """margin=-10 returned a 10×10 image from a 32×32 input (the crop cut into the image)."""
    with pytest.raises(ValueError, match="margin must be a whole number of pixels ≥ 0"):
        wiener_padded(X, K, margin=margin)
    assert wiener_padded(X, K, margin=0).shape == X.shape
