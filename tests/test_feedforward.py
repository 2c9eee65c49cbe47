"""The feedforward comparator of chapter 4: a CNN once on the border-aware Tikhonov start."""

import pytest
import torch

from deblur_edu.classical import tikhonov_start
from deblur_edu.kernels import motion
from deblur_edu.learned import DEQ, TikhonovCNN
from deblur_edu.physics import Blur, crop


def test_with_a_silent_cnn_it_is_the_tikhonov_start():
    net = TikhonovCNN(features=4, depth=3)
    last = net.cnn[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    y, k = torch.rand(2, 1, 32, 32), motion(7, 15)
    A = Blur(k, "valid")
    assert torch.allclose(net(y, k), crop(tikhonov_start(A, y, net.balance), A.pads))


def test_it_has_the_deq_denoisers_size_and_learns():
    ff, deq = TikhonovCNN(features=8, depth=3), DEQ(features=8, depth=3)
    assert sum(p.numel() for p in ff.parameters()) == sum(p.numel() for p in deq.denoiser.parameters())
    y, k = torch.rand(2, 1, 24, 24), motion(5, 0)
    ff(y, k).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ff.parameters())


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match="built for 1 channel"):
        TikhonovCNN(features=4, depth=3)(torch.rand(1, 3, 24, 24), motion(5, 0))


def test_the_unet_prior_is_the_pretrained_denoiser_once_on_the_tikhonov_start():
    """prior="unet": x̂ = D(x₀, aσ + b) — told σ (an error says how when it is not), every parameter learns."""
    net = TikhonovCNN(prior="unet", width=4, levels=1, level_slope=2.0, level_floor=0.01)
    torch.nn.init.normal_(net.denoiser.unet.head.weight, std=1e-2)
    y, k = torch.rand(2, 1, 24, 24), motion(5, 0)
    A = Blur(k, "valid")
    x0 = tikhonov_start(A, y, net.balance)
    expected = crop(net.denoiser(x0, torch.tensor([2.0 * 0.01 + 0.01, 2.0 * 0.03 + 0.01])), A.pads)
    out = net(y, k, torch.tensor([0.01, 0.03]))
    assert torch.allclose(out, expected, atol=1e-6)
    assert net.uses_sigma and not TikhonovCNN(features=4, depth=3).uses_sigma
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    with pytest.raises(ValueError, match=r"net\(y, k, sigma\)"):
        net(y, k)
    with pytest.raises(ValueError, match="unknown prior"):
        TikhonovCNN(prior="resnet")
