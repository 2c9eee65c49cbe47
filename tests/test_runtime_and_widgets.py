"""Quick/full mode, device choice, plotting and widget helpers."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from deblur_edu.kernels import gaussian
from deblur_edu.physics import Blur
from deblur_edu.runtime import pick, pick_device, run_mode, seed_everything
from deblur_edu.show.widgets import explorer, parameter_grid


def test_mode_defaults_to_quick_on_cpu(monkeypatch):
    monkeypatch.delenv("DEBLUR_EDU_MODE", raising=False)
    assert run_mode(torch.device("cpu")) == "quick"
    assert run_mode(torch.device("cuda")) == "full"
    monkeypatch.setenv("DEBLUR_EDU_MODE", "full")
    assert run_mode(torch.device("cpu")) == "full"
    assert pick(1, 2) == 2


def test_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_MODE", "fast")
    with pytest.raises(ValueError, match="DEBLUR_EDU_MODE='fast' is not a mode"):
        run_mode()


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pick_device("cuda")
    assert pick_device().type == "cpu"


def test_seed_everything_returns_a_seeded_generator():
    a = torch.rand(3, generator=seed_everything(4))
    b = torch.rand(3, generator=seed_everything(4))
    assert torch.equal(a, b)


def test_parameter_grid_draws_every_combination():
    fig = parameter_grid(lambda a, b: torch.full((8, 8), a * b), {"a": [0.1, 0.5], "b": [0.2, 0.4, 1.0]})
    assert len([ax for ax in fig.axes if ax.images]) == 6
    with pytest.raises(ValueError, match="one or two parameters"):
        parameter_grid(lambda **kw: torch.zeros(4, 4), {"a": [1], "b": [1], "c": [1]})


def test_explorer_has_one_slider_per_parameter():
    box = explorer(lambda s: torch.full((8, 8), s), {"s": [0.1, 0.5, 0.9]})
    slider = box.children[0]
    assert list(slider.options) == [0.1, 0.5, 0.9] and slider.value == 0.5


def test_operator_accepts_values_outside_image_range():
    """Blur acts on ratios and residuals (Richardson–Lucy, gradients): no 0–255 heuristic there."""
    A = Blur(gaussian(5, 1.0), "valid")
    assert A(torch.full((1, 1, 12, 12), 7.0)).shape == (1, 1, 8, 8)


def test_full_spectrum_from_the_half_spectrum():
    from deblur_edu.kernels import motion
    from deblur_edu.physics import psf2otf
    from deblur_edu.show.plot import full_spectrum_magnitude

    k = motion(9, 30, dtype=torch.float64)  # not symmetric under a flip of either axis alone
    half = psf2otf(k, (16, 20))
    padded = torch.zeros(16, 20, dtype=torch.float64)
    h = k.shape[-1]
    padded[:h, :h] = k[0, 0]
    full = torch.fft.fft2(torch.roll(padded, (-(h // 2), -(h // 2)), dims=(0, 1))).abs().numpy()
    assert abs(full_spectrum_magnitude(half) - full).max() < 1e-12
