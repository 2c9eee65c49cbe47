"""Classical blind deconvolution: each step's identity, the cleaning rules, the end-to-end
estimate on an image it was not tuned on, and the errors."""

import pytest
import torch

from deblur_edu.bench.methods import get_method
from deblur_edu.classical.blind_deconvolution import (
    blind_deconvolve,
    centre_kernel,
    centre_of_mass,
    clean_kernel,
    connected_components,
    estimate_kernel,
    estimate_noise_level,
    kernel_least_squares,
    kernel_support,
    periodic_extension,
    place_kernel,
    pyramid_sizes,
    shift_by_fraction,
)
from deblur_edu.data import centre_crop, sample_image
from deblur_edu.kernels import camera_shake, pad_to
from deblur_edu.metrics import psnr
from deblur_edu.physics import Blur, add_noise, fast_fft_size


def test_place_kernel_and_kernel_support_are_adjoint():
    g = torch.Generator().manual_seed(0)
    k = torch.randn(3, 1, 7, 7, generator=g, dtype=torch.float64)
    z = torch.randn(3, 1, 20, 24, generator=g, dtype=torch.float64)
    lhs = (place_kernel(k, (20, 24)) * z).sum()
    rhs = (k * kernel_support(z, 7)).sum()
    assert torch.allclose(lhs, rhs)
    assert torch.equal(kernel_support(place_kernel(k, (20, 24)), 7), k)


def test_kernel_least_squares_recovers_the_kernel_from_the_sharp_image():
    x = centre_crop(sample_image("camera"), 96).double()
    k = pad_to(camera_shake(11, torch.Generator().manual_seed(3)), 15).double()
    y = Blur(k, "circular")(x)
    start = torch.zeros_like(k)
    found = kernel_least_squares(x, y, start, gamma=1e-6, iterations=200)
    assert float((found - k).abs().sum()) < 0.02


def test_connected_components_labels_each_piece_once():
    mask = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    mask[..., 1, 1:4] = True
    mask[..., 2, 4] = True  # touches the first piece diagonally: same piece
    mask[..., 5, 5:7] = True
    labels = connected_components(mask)
    assert labels[..., 1, 1] == labels[..., 2, 4] != labels[..., 5, 5]
    assert len(labels.unique()) == 3  # two pieces and the background
    assert torch.equal(labels > 0, mask)


def test_clean_kernel_drops_faint_entries_and_small_pieces():
    k = torch.zeros(2, 1, 9, 9)
    k[0, 0, 4, 2:7] = 1.0  # the shake
    k[0, 0, 0, 0] = 0.4  # a small isolated piece: 0.4 / 5.4 of the mass
    k[0, 0, 8, 8] = -0.5  # negative
    k[0, 0, 6, 6] = 0.05  # below 10 % of the max
    clean = clean_kernel(k, threshold=0.1, min_mass=0.1)
    expected = torch.zeros(9, 9)
    expected[4, 2:7] = 0.2
    assert torch.allclose(clean[0, 0], expected)
    # nothing left (the second kernel is all zeros): the identity, not a division by zero
    assert clean[1, 0, 4, 4] == 1 and clean[1].sum() == 1


def test_centre_kernel_moves_each_centre_of_mass_to_the_middle():
    k = torch.zeros(2, 1, 11, 11)
    k[0, 0, 1, 2:5] = 1 / 3  # centre of mass (1, 3)
    k[1, 0, 7, 8] = 1.0  # (7, 8)
    centred = centre_kernel(k)
    assert centred[0, 0, 5, 4:7].sum() == 1 and centred[1, 0, 5, 5] == 1


def test_centre_kernel_also_moves_the_fraction_of_a_pixel():
    g = torch.Generator().manual_seed(0)
    k = torch.zeros(3, 1, 15, 15, dtype=torch.float64)
    k[..., 2:8, 3:9] = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64) ** 4  # off centre, by fractions
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    assert float(centre_of_mass(k, -2).abs().min()) > 1
    centred = centre_kernel(k)
    for dim in (-2, -1):
        assert torch.allclose(centre_of_mass(centred, dim), torch.zeros(3, 1, dtype=torch.float64), atol=1e-12)
    assert float(centred.min()) >= 0 and torch.allclose(centred.sum(dim=(-2, -1)), torch.ones(3, 1, dtype=torch.float64))
    # a kernel that reaches its support's edge wraps around: still non-negative, still summing to 1
    edge = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    edge[0, 0, 0, :] = 1 / 9
    edge[0, 0, 8, 7] = 0.5
    edge = edge / edge.sum()
    moved = centre_kernel(edge)
    assert float(moved.min()) >= 0 and float(moved.sum()) == pytest.approx(1)
    # channels are kernels too: each is centred on its own
    two = centre_kernel(k[:2].reshape(1, 2, 15, 15))
    assert torch.allclose(two.reshape(2, 1, 15, 15), centred[:2])


def test_shift_by_fraction_moves_the_centre_of_mass_by_exactly_minus_f():
    k = torch.zeros(2, 1, 9, 9, dtype=torch.float64)
    k[0, 0, 4, 3:6] = 1 / 3
    k[1, 0, 2:5, 4] = 1 / 3
    f = torch.tensor([[0.3], [-0.45]], dtype=torch.float64)
    for dim in (-2, -1):
        moved = shift_by_fraction(k, f, dim)
        assert torch.allclose(centre_of_mass(moved, dim), centre_of_mass(k, dim) - f)
        assert torch.allclose(moved.sum(dim=(-2, -1)), k.sum(dim=(-2, -1)))


def test_pyramid_sizes_are_odd_and_rise_to_the_size():
    sizes = pyramid_sizes(31)
    assert sizes[-1] == 31 and sizes[0] >= 5
    assert all(s % 2 == 1 for s in sizes) and sizes == sorted(set(sizes))
    assert pyramid_sizes(5) == [5]


def test_periodic_extension_wraps_without_a_jump():
    x = centre_crop(sample_image("camera"), 100)
    e = periodic_extension(x, 15)
    assert e.shape[-2:] == (fast_fft_size(115), fast_fft_size(115))
    assert torch.equal(e[..., :100, :100], x)
    # wrapping around: the extension's last row sits next to the image's first
    assert float((e[..., -1, :] - e[..., 0, :]).abs().max()) < float((x[..., -1, :] - x[..., 0, :]).abs().max()) / 5


def test_estimate_noise_level_reads_the_noise_of_a_blurred_image():
    x = centre_crop(sample_image("camera"), 192)
    y = Blur(pad_to(camera_shake(13, torch.Generator().manual_seed(1)), 13), "circular")(x)
    for sigma in (0.01, 0.03):
        noisy = add_noise(y, sigma, torch.Generator().manual_seed(2))
        assert abs(float(estimate_noise_level(noisy)) - sigma) < 0.25 * sigma  # what is left of the edges adds a little


def shaken(seed: int = 5, size: int = 13):
    """An image the estimator was not tuned on (scikit-image's camera), blurred by a seeded shake."""
    scene = centre_crop(sample_image("camera"), 128 + size - 1)
    k = camera_shake(size, torch.Generator().manual_seed(seed))
    y = add_noise(Blur(k, "valid")(scene), 0.01, torch.Generator().manual_seed(seed))
    return y, centre_crop(scene, 128), k


def test_estimate_kernel_finds_the_shake_and_blind_tv_deblurs():
    y, x, k = shaken()
    x_hat, k_hat = blind_deconvolve(y, get_method("tv"), size=17, iterations=6)
    truth = centre_kernel(pad_to(k, 17))
    assert k_hat.shape == (1, 1, 17, 17) and float(k_hat.min()) >= 0
    assert float(k_hat.sum()) == pytest.approx(1, abs=1e-5)
    assert float((k_hat - truth).abs().sum()) < 1.0  # 2 would be two kernels with nothing in common
    assert float(psnr(x_hat.clamp(0, 1), x, crop=8)) > float(psnr(y, x, crop=8)) + 2


def test_estimate_kernel_batched_equals_one_at_a_time():
    y1, _, _ = shaken(5)
    y2, _, _ = shaken(6)
    both = estimate_kernel(torch.cat([y1, y2]), size=9, iterations=2)
    assert torch.allclose(both[1:], estimate_kernel(y2, size=9, iterations=2), atol=1e-6)
    assert both.dtype == y1.dtype


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 8}, "odd number"),
    ({"size": 31.0}, "must be an int"),
    ({"size": 99}, "too small"),
    ({"lam": 0.0}, "lam"),
    ({"lam": 1e5}, "nothing to do"),
    ({"lam_min": 0.1}, "must not exceed lam"),
    ({"lam_decay": 0.5}, "lam_decay"),
    ({"lam_decay": float("nan")}, "lam_decay"),
    ({"threshold": 0.9}, "fraction"),
    ({"min_mass": "0.1"}, "min_mass must be a number"),
    ({"iterations": 0}, "iterations"),
    ({"work_dtype": torch.float16}, "work_dtype"),
])
def test_estimate_kernel_rejects_bad_settings(kwargs, message):
    y, _, _ = shaken()
    with pytest.raises((ValueError, TypeError), match=message):
        estimate_kernel(y, **kwargs)


def test_estimate_kernel_wants_gray_images():
    with pytest.raises(ValueError, match="gray"):
        estimate_kernel(torch.rand(1, 3, 80, 80), size=9)


def test_blind_deconvolve_hands_the_estimates_to_the_non_blind_method():
    y, _, _ = shaken()
    seen = {}

    def deconvolve(y_, k_, sigma_):
        seen.update(y=y_, k=k_, sigma=sigma_)
        return torch.zeros_like(y_)

    x_hat, k_hat = blind_deconvolve(y, deconvolve, size=9, iterations=2)
    assert seen["y"] is y and torch.equal(seen["k"], k_hat) and k_hat.shape == (1, 1, 9, 9)
    assert seen["sigma"] == pytest.approx(float(estimate_noise_level(y)))
    assert torch.equal(x_hat, torch.zeros_like(y))


def test_blind_deconvolve_refuses_what_is_not_a_method_before_estimating(monkeypatch):
    from deblur_edu.classical import blind_deconvolution

    def never(*args, **kwargs):
        raise AssertionError("the estimate ran before the method was checked")

    monkeypatch.setattr(blind_deconvolution, "estimate_kernel", never)
    y, _, _ = shaken()
    with pytest.raises(TypeError, match="get_method"):
        blind_deconvolve(y, "tv")


def test_the_estimate_is_not_tracked_by_autograd():
    y, _, _ = shaken()
    k = estimate_kernel(y.requires_grad_(), size=9, iterations=1)
    assert not k.requires_grad


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(64, 64), "4 dimensions"),
    (torch.zeros(1, 1, 64, 64, dtype=torch.uint8), "float"),
    (torch.full((1, 1, 8, 8), float("nan")), "NaN|finite"),
    (torch.zeros(1, 1, 1, 64), "2×2"),
])
def test_estimate_noise_level_refuses_what_is_not_an_image(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        estimate_noise_level(bad)


def test_the_defaults_are_the_best_settings_measured_on_the_tune_split():
    """benchmarks/blind_settings.json (python -m deblur_edu.experiments.ch5_blind_settings): the defaults
    against each one-at-a-time change, mean tune PSNR over both noise levels."""
    from deblur_edu import results
    from deblur_edu.experiments.ch5_blind_settings import VARIANTS

    rows = results.load_json("blind_settings.json")["rows"]
    assert [r["settings"] for r in rows] == VARIANTS and rows[0]["settings"] == {}
    best = max(r["mean_psnr"] for r in rows)
    assert rows[0]["mean_psnr"] >= best - 0.1, "a change beats the defaults: adopt it and rerun make blind-baseline"
