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
    from deblur_edu.methods import WEIGHTS_DIR, get_method, load_shipped

    meta = __import__("json").loads((WEIGHTS_DIR / "rgdn-cpu.json").read_text())
    for key in ("config", "data_recipe", "commit", "training", "sha256", "metrics"):
        assert meta[key], key
    assert (WEIGHTS_DIR / "rgdn-cpu.pt").stat().st_size < 5_000_000  # small
    model = load_shipped("rgdn-cpu", "rgdn")
    assert model.channels == 1
    y = torch.rand(1, 1, 40, 40)
    assert get_method("rgdn")(y, motion(7, 10), 0.01, {}).shape == y.shape
