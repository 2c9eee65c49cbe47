"""Aligning a blind method's estimate before scoring: the shift found, the score it can only
raise, the benchmark's --align, and the errors."""

import pytest
import torch
import torch.nn.functional as F

from deblur_edu.bench import run
from deblur_edu.bench.protocol import Benchmark
from deblur_edu.data import centre_crop, sample_image
from deblur_edu.metrics import psnr
from deblur_edu.metrics.alignment import align_to, fourier_shift


def smooth(seed: int = 0, size: int = 80) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.rand(2, 1, size, size, generator=g), 5, 1, 2)


def test_a_whole_pixel_shift_is_undone_exactly():
    x = torch.rand(2, 1, 40, 56, generator=torch.Generator().manual_seed(1))
    aligned, shifts = align_to(x.roll((3, -2), (-2, -1)), x, max_shift=4, crop=0)
    assert shifts.tolist() == [[-3.0, 2.0], [-3.0, 2.0]]
    assert torch.allclose(aligned[..., 6:-6, 6:-6], x[..., 6:-6, 6:-6], atol=1e-5)


def test_fourier_shift_moves_pixel_i_to_i_plus_d():
    x = torch.zeros(1, 1, 12, 16)
    x[0, 0, 5, 5] = 1
    moved = fourier_shift(x, torch.tensor([2.0]), torch.tensor([-3.0]))
    assert torch.allclose(moved[0, 0, 7, 2], torch.tensor(1.0), atol=1e-5) and float(moved.abs().sum()) < 1 + 1e-4


def test_a_fractional_shift_is_found_to_a_sixteenth_of_a_pixel():
    x = smooth()
    moved = fourier_shift(x, torch.tensor([0.4, -1.7]), torch.tensor([1.3, 0.55]))
    _, shifts = align_to(moved, x, max_shift=3, crop=2)
    assert torch.allclose(shifts, torch.tensor([[-0.4, -1.3], [1.7, -0.55]]), atol=1 / 32)


def test_fourier_shift_by_whole_pixels_is_a_roll():
    x = torch.rand(1, 1, 20, 24)
    assert torch.allclose(fourier_shift(x, torch.tensor([2.0]), torch.tensor([-5.0])), x.roll((2, -5), (-2, -1)), atol=1e-5)


def test_alignment_never_lowers_the_score_on_the_same_interior():
    """No shift is among the candidates, so the aligned error is at most the unaligned one; a noisy,
    slightly shifted estimate gains."""
    x = centre_crop(sample_image("camera"), 96)
    noise = 0.05 * torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(2))
    for shift in (0.0, 0.5):
        x_hat = (fourier_shift(x, torch.tensor([shift]), torch.tensor([-shift])) + noise).clamp(0, 1)
        aligned, _ = align_to(x_hat, x, max_shift=2, crop=3)
        before, after = float(psnr(x_hat, x, crop=6)), float(psnr(aligned, x, crop=6))
        assert after >= before - 1e-4
    assert after > before + 1


def test_no_search_returns_the_estimate_unchanged():
    x = torch.rand(1, 1, 16, 16)
    aligned, shifts = align_to(x, x.flip(-1), max_shift=0, crop=2)
    assert aligned is x and shifts.abs().sum() == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"max_shift": -1, "crop": 0}, "max_shift"),
    ({"max_shift": 1.5, "crop": 0}, "max_shift"),
    ({"max_shift": 2, "crop": -3}, "crop"),
    ({"max_shift": 10, "crop": 5}, "nothing to score"),
])
def test_bad_settings_are_refused(kwargs, message):
    x = torch.rand(1, 1, 32, 32)
    with pytest.raises(ValueError, match=message):
        align_to(x, x, **kwargs)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="same shape"):
        align_to(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 30, 32), max_shift=1, crop=0)


def off_centre_bench() -> Benchmark:
    """One image, one kernel that only moves the image by two pixels: the blurry input is the
    sharp image shifted, what a blind method with a centred kernel would return."""
    k = torch.zeros(1, 1, 5, 5)
    k[0, 0, 2, 4] = 1.0
    return Benchmark("tune", {"camera": centre_crop(sample_image("camera"), 120)}, [k], 96)


def test_the_benchmark_scores_after_aligning_when_asked():
    bench = off_centre_bench()
    plain = run.evaluate(bench, "blurred", "valid", 0.01, torch.device("cpu"))
    aligned = run.evaluate(bench, "blurred", "valid", 0.01, torch.device("cpu"), align=3)
    assert plain["align"] == 0 and aligned["align"] == 3
    assert aligned["psnr"] > plain["psnr"] + 10  # the shifted copy is the image itself, up to noise


def test_the_command_line_refuses_a_negative_shift(cli_error):
    assert "--align" in cli_error(run.main, ["--align", "-1"])


def test_the_command_line_refuses_a_shift_that_leaves_nothing_to_score(cli_error):
    assert "--align" in cli_error(run.main, ["--split", "tune", "--methods", "blurred", "--crop", "64", "--align", "40"])


def test_a_blind_method_needs_what_its_non_blind_method_needs():
    from deblur_edu.bench.methods import load_defaults

    defaults = load_defaults()
    without_pnp = {**defaults, "methods": {k: v for k, v in defaults["methods"].items() if k != "pnp"}}
    run.check_methods(["blind-pnp"], defaults)
    with pytest.raises(ValueError, match="'blind-pnp' runs 'pnp'"):
        run.check_methods(["blind-pnp"], without_pnp)
    from deblur_edu.bench.methods import available_methods

    assert "blind-pnp" in available_methods(defaults) and "blind-pnp" not in available_methods(without_pnp)
    assert "blind-tv" in available_methods(without_pnp)
