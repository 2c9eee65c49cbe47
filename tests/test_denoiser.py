"""The learned Gaussian denoiser: its noise-level input, its start as the identity, its training
through the one loop, and (shipped) how good a denoiser it is."""

import pytest
import torch

from deblur_edu.learned.denoiser import GaussianDenoiser, noise_map
from deblur_edu.zoo.checkpoints import load_model
from deblur_edu.zoo.registry import MODELS
from deblur_edu.train import load_config, train


def test_noise_map_takes_a_number_or_one_level_per_image():
    like = torch.zeros(3, 1, 4, 5)
    assert torch.equal(noise_map(0.1, like), torch.full((3, 1, 4, 5), 0.1))
    m = noise_map(torch.tensor([0.0, 0.1, 0.2]), like)
    assert m.shape == (3, 1, 4, 5) and m[2, 0, 3, 4] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="one value per image"):
        noise_map(torch.tensor([0.1, 0.2]), like)
    with pytest.raises(ValueError, match=">= 0"):
        noise_map(-0.1, like)


def test_an_untrained_denoiser_is_exactly_the_identity():
    """The residual branch's last convolution starts at zero: D(x, σ) = x before training."""
    net = GaussianDenoiser(width=8, levels=2)
    x = torch.rand(2, 1, 20, 28)
    assert torch.equal(net(x, 0.1), x)


def test_the_denoiser_trains_through_the_one_loop(tmp_path, skip_without_photos):
    cfg = load_config("denoiser", "tiny")
    skip_without_photos(cfg["data"])
    cfg["train"]["steps"] = 6
    path = train("denoiser", cfg, tmp_path / "run", progress=False)
    model, meta = load_model(path, MODELS["denoiser"].build)
    assert "photographs" in meta["data_recipe"] and meta["model_name"] == "denoiser"
    x = torch.rand(1, 1, 24, 24)
    assert not torch.equal(model(x, 0.1), x)  # it moved away from the identity
